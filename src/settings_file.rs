//! The optional TOML file of `tandem serve`'s settings (`--config FILE`,
//! `TANDEM_CONFIG`), and `tandem config`'s print-out of the effective ones.
//!
//! The file's keys are the long flags' names, at the top level:
//!
//! ```text
//! bind = "0.0.0.0:8080"
//! database-url = "postgres://tandem@db/tandem?sslmode=verify-full"
//! max-message-bytes = 1048576
//! allow-create = false
//! allowed-origins = ["self", "https://editor.example.com"]
//! ```
//!
//! Nothing here knows the flags: [`apply`] makes each value of the file the
//! default of the argument with that long name, so that clap parses it like
//! any default (the same types, the same errors), and a flag or an
//! environment variable still wins over it (clap takes the command line,
//! then the environment, then the default). A flag added to `serve` is thus
//! a key of the file with no code here. A key that names no flag is an
//! error, as is a table or a date.
//!
//! [`render`] prints every argument of a parsed command as TOML that this
//! module reads back, saying where each value came from, with secrets
//! masked: arguments whose environment values clap hides, those named like
//! a secret (`secret`, `token`, `password`, but not a `-file` naming where
//! one is), and the password of any URL.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// What a masked value is printed as.
pub const MASK: &str = "********";

/// Arguments that are not settings: clap's own, and the file itself.
const NOT_SETTINGS: &[&str] = &["help", "version", "config"];

/// A settings file, read and checked for TOML syntax (its keys are checked
/// against a command by [`apply`]).
#[derive(Debug, Clone)]
pub struct SettingsFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// `(key, values, whether it was a list)` in the file's order.
    entries: Vec<(String, Vec<String>, bool)>,
}

/// Why a settings file cannot be used. Each names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum SettingsFileError {
    /// The file cannot be read.
    #[error("cannot read the settings file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML.
    #[error("{path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key that no flag has.
    #[error(
        "{path}: unknown setting {key:?} (the settings are the long flags of `tandem {command}`; see `tandem {command} --help`)"
    )]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The subcommand whose flags were looked at.
        command: String,
    },
    /// A value of a type no flag takes, or a list for a flag of one value.
    #[error("{path}: setting {key:?}: {reason}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl SettingsFile {
    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    ///
    /// [`SettingsFileError::Read`] or [`SettingsFileError::Syntax`]; a
    /// table, a date, or a list of lists is [`SettingsFileError::BadValue`].
    pub fn load(path: &Path) -> Result<Self, SettingsFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text` as the contents of `path`.
    ///
    /// # Errors
    ///
    /// As [`SettingsFile::load`], apart from reading.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SettingsFileError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| SettingsFileError::Syntax {
                    path: path.to_owned(),
                    message: e.to_string().trim_end().to_owned(),
                })?;
        let bad = |key: &str, reason: &str| SettingsFileError::BadValue {
            path: path.to_owned(),
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        let mut entries = Vec::with_capacity(table.len());
        for (key, value) in table {
            let (values, is_list) = match &value {
                toml::Value::Array(items) => (
                    items
                        .iter()
                        .map(|v| scalar(v).ok_or_else(|| bad(&key, "a list may hold only strings, numbers and booleans")))
                        .collect::<Result<Vec<_>, _>>()?,
                    true,
                ),
                other => (
                    vec![scalar(other).ok_or_else(|| {
                        bad(&key, "expected a string, a number or a boolean (settings are not grouped in tables)")
                    })?],
                    false,
                ),
            };
            entries.push((key, values, is_list));
        }
        Ok(Self {
            path: path.to_owned(),
            entries,
        })
    }

    /// The keys the file sets.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _, _)| k.as_str())
    }
}

/// A TOML scalar as clap would read it from the command line.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

/// Whether `arg` takes a list of values.
fn takes_list(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append) || arg.get_value_delimiter().is_some()
}

/// The argument of `cmd` whose long name is `long`, if it is a setting.
fn setting<'a>(cmd: &'a Command, long: &str) -> Option<&'a Arg> {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(long) && !NOT_SETTINGS.contains(&a.get_id().as_str()))
}

/// `cmd` with the file's values as the defaults of its subcommands named in
/// `subcommands` (each must have every key of the file as a long flag).
///
/// # Errors
///
/// [`SettingsFileError::UnknownKey`] for a key that is not a flag of one of
/// them, [`SettingsFileError::BadValue`] for a list given to a flag of one
/// value.
pub fn apply(
    mut cmd: Command,
    subcommands: &[&str],
    file: &SettingsFile,
) -> Result<Command, SettingsFileError> {
    for &name in subcommands {
        let Some(sub) = cmd.find_subcommand(name) else {
            continue;
        };
        let mut defaults: Vec<(clap::Id, Vec<&'static str>)> = Vec::new();
        for (key, values, is_list) in &file.entries {
            let arg = setting(sub, key).ok_or_else(|| SettingsFileError::UnknownKey {
                path: file.path.clone(),
                key: key.clone(),
                command: name.to_owned(),
            })?;
            if *is_list && !takes_list(arg) {
                return Err(SettingsFileError::BadValue {
                    path: file.path.clone(),
                    key: key.clone(),
                    reason: "takes one value, not a list".into(),
                });
            }
            // clap keeps defaults for the life of the program; this runs
            // once at start-up, for a file's worth of short strings.
            let leaked = values
                .iter()
                .map(|v| &*Box::leak(v.clone().into_boxed_str()))
                .collect();
            defaults.push((arg.get_id().clone(), leaked));
        }
        cmd = cmd.mut_subcommand(name, |mut sub| {
            for (id, values) in defaults {
                sub = sub.mut_arg(id, |arg| match values.as_slice() {
                    [one] if !takes_list(&arg) => arg.default_value(*one),
                    many => arg.default_values(many.to_vec()),
                });
            }
            sub
        });
    }
    Ok(cmd)
}

/// The command line parsed with the settings file, if any, under it.
pub struct Parsed {
    /// The matches of the whole command line.
    pub matches: ArgMatches,
    /// The command as built, before the file's defaults (which would move
    /// the arguments they touch to the end of its list).
    pub command: Command,
    /// The file, when one was named.
    pub file: Option<SettingsFile>,
}

/// Parses `args` with `cmd`, reading the settings file that the chosen
/// subcommand's `--config` argument (or its environment variable) names,
/// when that subcommand is one of `subcommands`, and parsing again with the
/// file's values as defaults. Help, version and clap's usage errors exit
/// the process as clap always does (status 2 for errors).
///
/// # Errors
///
/// A [`SettingsFileError`]: the caller says so and exits with status 2.
pub fn parse<I, T>(cmd: Command, subcommands: &[&str], args: I) -> Result<Parsed, SettingsFileError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let first = cmd
        .clone()
        .try_get_matches_from(&args)
        .unwrap_or_else(|e| e.exit());
    let path = match first.subcommand() {
        Some((name, sub)) if subcommands.contains(&name) => {
            sub.try_get_one::<PathBuf>("config").ok().flatten().cloned()
        }
        _ => None,
    };
    let Some(path) = path else {
        return Ok(Parsed {
            matches: first,
            command: cmd,
            file: None,
        });
    };
    let file = SettingsFile::load(&path)?;
    let matches = apply(cmd.clone(), subcommands, &file)?
        .try_get_matches_from(&args)
        .unwrap_or_else(|e| e.exit());
    Ok(Parsed {
        matches,
        command: cmd,
        file: Some(file),
    })
}

/// Whether the argument's value is a secret to mask.
fn is_secret(arg: &Arg) -> bool {
    let long = arg.get_long().unwrap_or_default();
    let names_a_file = long.ends_with("-file") || long.ends_with("-path") || long.ends_with("-dir");
    arg.is_hide_env_values_set()
        || (!names_a_file
            && ["secret", "token", "password"]
                .iter()
                .any(|w| long.contains(w)))
}

/// `value` with the password of a URL in it (`scheme://user:PASSWORD@`) and
/// any `password=` parameter replaced by [`MASK`].
pub fn mask_passwords(value: &str) -> String {
    let mut out = value.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let start = scheme_end + 3;
        let authority_end = out[start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..authority_end].rfind('@') {
            let userinfo = start..start + at;
            if let Some(colon) = out[userinfo.clone()].find(':') {
                out.replace_range(userinfo.start + colon + 1..userinfo.end, MASK);
            }
        }
    }
    let mut from = 0;
    while let Some(i) = out[from..].find("password=") {
        let begin = from + i + "password=".len();
        let boundary =
            i == 0 && from == 0 || matches!(out.as_bytes()[from + i - 1], b'?' | b'&' | b' ');
        let end = out[begin..]
            .find(['&', ' ', '#'])
            .map_or(out.len(), |j| begin + j);
        if boundary {
            out.replace_range(begin..end, MASK);
            from = begin + MASK.len();
        } else {
            from = end;
        }
    }
    out
}

/// A value as TOML: a number or a boolean as such, anything else a string.
/// Read back, every form gives clap the same text.
fn toml_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>()
        && i.to_string() == raw
    {
        return toml::Value::Integer(i);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_owned()),
    }
}

/// The effective settings of the subcommand `name` of `parsed`, as TOML
/// that [`SettingsFile::parse`] reads back: one `key = value` line per
/// setting, with where it came from (`flag`, `env`, `file`, `default`) in a
/// comment, and unset ones as comments. Secrets are masked.
pub fn render(parsed: &Parsed, name: &str) -> String {
    let Some(cmd) = parsed.command.find_subcommand(name) else {
        return String::new();
    };
    let Some(matches) = parsed.matches.subcommand_matches(name) else {
        return String::new();
    };
    let from_file: Vec<&str> = parsed.file.iter().flat_map(SettingsFile::keys).collect();
    let mut out = String::from(
        "# The effective settings of `tandem serve`: a flag wins over the\n\
         # environment, which wins over the settings file, which wins over the\n\
         # built-in default. Secrets are masked.\n",
    );
    if let Some(file) = &parsed.file {
        out.push_str(&format!("# settings file: {}\n", file.path.display()));
    }
    out.push('\n');
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if NOT_SETTINGS.contains(&id) || arg.is_positional() {
            continue;
        }
        let raw: Vec<String> = match matches.try_get_raw(id) {
            Ok(Some(values)) => values
                .map(OsStr::to_string_lossy)
                .map(|v| v.into_owned())
                .collect(),
            _ => Vec::new(),
        };
        if raw.is_empty() && !takes_list(arg) {
            out.push_str(&format!("# {long} = (not set)\n"));
            continue;
        }
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "env",
            Some(ValueSource::DefaultValue) if from_file.contains(&long) => "file",
            _ => "default",
        };
        let shown: Vec<toml::Value> = raw
            .iter()
            .map(|v| {
                if is_secret(arg) {
                    toml::Value::String(MASK.into())
                } else {
                    toml_value(&mask_passwords(v))
                }
            })
            .collect();
        let value = if takes_list(arg) {
            toml::Value::Array(shown)
        } else {
            shown
                .into_iter()
                .next()
                .unwrap_or(toml::Value::String(String::new()))
        };
        let key = toml::Value::String(long.to_owned());
        // Bare keys need no quotes; anything else is quoted by TOML's rules.
        let key = if long
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            long.to_owned()
        } else {
            key.to_string()
        };
        out.push_str(&format!("{key} = {value}  # {source}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Parser, Subcommand};

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(Subcommand)]
    enum Sub {
        Serve(Serve),
        Config(Serve),
        Other,
    }

    #[derive(Args)]
    struct Serve {
        #[arg(long, env = "SF_TEST_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, env = "SF_TEST_BIND", default_value = "127.0.0.1:8080")]
        bind: String,
        #[arg(long, env = "SF_TEST_MAX", default_value_t = 10)]
        max_bytes: usize,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        allow_create: bool,
        #[arg(long, value_delimiter = ',', default_value = "self")]
        origins: Vec<String>,
        #[arg(long = "jwt-secret", env = "SF_TEST_SECRET", hide_env_values = true)]
        jwt_secret: Option<String>,
        #[arg(long)]
        jwt_secret_file: Option<PathBuf>,
        #[arg(long)]
        admin_token: Option<String>,
        #[arg(long)]
        database_url: Option<String>,
    }

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("tandem.toml");
        std::fs::write(&path, text).expect("write");
        path
    }

    fn parse_with(args: &[&str]) -> Result<(Parsed, Serve), SettingsFileError> {
        use clap::{CommandFactory, FromArgMatches};
        let parsed = parse(Cli::command(), &["serve", "config"], args.iter().copied())?;
        let cli = Cli::from_arg_matches(&parsed.matches).expect("matches");
        match cli.command {
            Sub::Serve(s) | Sub::Config(s) => Ok((parsed, s)),
            Sub::Other => panic!("other"),
        }
    }

    #[test]
    fn the_file_sets_defaults_that_flags_override() {
        let dir = tempfile::tempdir().expect("dir");
        let path = write(
            &dir,
            "bind = \"0.0.0.0:9000\"\nmax-bytes = 42\nallow-create = false\norigins = [\"self\", \"https://a.example\"]\n",
        );
        let p = path.to_str().expect("utf-8");
        let (_, s) = parse_with(&["t", "serve", "--config", p]).expect("parses");
        assert_eq!(s.bind, "0.0.0.0:9000");
        assert_eq!(s.max_bytes, 42);
        assert!(!s.allow_create);
        assert_eq!(s.origins, ["self", "https://a.example"]);
        let (_, s) =
            parse_with(&["t", "serve", "--config", p, "--max-bytes", "7"]).expect("parses");
        assert_eq!(s.max_bytes, 7);
        assert_eq!(s.bind, "0.0.0.0:9000");
        // Without a file: the built-in defaults.
        let (_, s) = parse_with(&["t", "serve"]).expect("parses");
        assert_eq!(s.max_bytes, 10);
        assert!(s.allow_create);
    }

    #[test]
    fn unknown_keys_tables_and_misplaced_lists_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        for (text, expected) in [
            ("max-byte = 3\n", "unknown setting \"max-byte\""),
            ("config = \"other.toml\"\n", "unknown setting \"config\""),
            ("[serve]\nbind = \"x\"\n", "not grouped in tables"),
            ("bind = [\"a\", \"b\"]\n", "takes one value, not a list"),
            ("bind = 1979-05-27\n", "expected a string"),
            ("bind = \n", "not valid TOML"),
        ] {
            let path = write(&dir, text);
            let err = parse_with(&["t", "serve", "--config", path.to_str().expect("utf-8")])
                .err()
                .expect(text);
            assert!(err.to_string().contains(expected), "{text}: {err}");
            assert!(err.to_string().contains("tandem.toml"), "{err}");
        }
        let err = parse_with(&["t", "serve", "--config", "/nonexistent/t.toml"])
            .err()
            .expect("missing file");
        assert!(err.to_string().contains("/nonexistent/t.toml"), "{err}");
    }

    #[test]
    fn render_says_where_each_value_came_from_and_masks_secrets() {
        let dir = tempfile::tempdir().expect("dir");
        let path = write(
            &dir,
            "max-bytes = 42\njwt-secret = \"hunter2\"\nadmin-token = \"t0k3n\"\ndatabase-url = \"postgres://u:pa55@db/t?sslmode=require\"\njwt-secret-file = \"/run/secret\"\n",
        );
        let p = path.to_str().expect("utf-8");
        let (parsed, _) =
            parse_with(&["t", "config", "--config", p, "--bind", "0.0.0.0:1"]).expect("parses");
        let text = render(&parsed, "config");
        assert!(text.contains("bind = \"0.0.0.0:1\"  # flag\n"), "{text}");
        assert!(text.contains("max-bytes = 42  # file\n"), "{text}");
        assert!(text.contains("allow-create = true  # default\n"), "{text}");
        assert!(text.contains("origins = [\"self\"]  # default\n"), "{text}");
        assert!(
            text.contains("jwt-secret = \"********\"  # file\n"),
            "{text}"
        );
        assert!(
            text.contains("admin-token = \"********\"  # file\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "database-url = \"postgres://u:********@db/t?sslmode=require\"  # file\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("jwt-secret-file = \"/run/secret\"  # file\n"),
            "{text}"
        );
        for secret in ["hunter2", "t0k3n", "pa55"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        // What it prints reads back as a settings file (secrets aside).
        let back = SettingsFile::parse(Path::new("printed.toml"), &text).expect("TOML");
        assert!(back.keys().any(|k| k == "max-bytes"));
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            mask_passwords("postgres://u:p@h/d"),
            "postgres://u:********@h/d"
        );
        assert_eq!(mask_passwords("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(
            mask_passwords("postgres://h/d?user=u&password=p&x=1"),
            "postgres://h/d?user=u&password=********&x=1"
        );
        assert_eq!(
            mask_passwords("host=h password=p user=u"),
            "host=h password=******** user=u"
        );
        assert_eq!(mask_passwords("password=p"), "password=********");
        assert_eq!(mask_passwords("nopassword=p"), "nopassword=p");
        assert_eq!(
            mask_passwords("redis://:s3@r:6379"),
            "redis://:********@r:6379"
        );
    }
}
