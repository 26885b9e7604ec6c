//! The web app carried inside the binary. Built with the `embed-app`
//! feature (`scripts/release` builds `client-js/dist` first, then the
//! binary with it), `tandem serve` serves the editor from any working
//! directory, and the binary copied anywhere is the whole server. Without
//! the feature nothing is embedded and the app comes from a folder
//! (`--static-dir`, by default `client-js/dist` when it is there), which
//! also overrides an embedded app during development.
//!
//! Only `index.html` and `assets/` are embedded (not the library build
//! beside them in `dist/`), with the gzipped copies the app's build writes
//! (`NAME.gz`), which are sent as they are to browsers that take gzip. The
//! source maps stay out (22 MB of the app's 39): a folder serves them.

use std::borrow::Cow;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

#[cfg(feature = "embed-app")]
#[derive(rust_embed::Embed)]
#[folder = "client-js/dist/"]
#[include = "index.html"]
#[include = "assets/**"]
#[exclude = "**/*.map"]
#[exclude = "**/*.map.gz"]
struct App;

/// A file of the embedded app.
pub struct EmbeddedFile {
    /// Its bytes (borrowed from the binary).
    pub data: Cow<'static, [u8]>,
    /// A strong validator: the hex SHA-256 of the bytes.
    pub hash: String,
}

/// The embedded file at `path` (`index.html`, `assets/NAME`), if this
/// binary carries an app and that file is in it.
pub fn embedded(path: &str) -> Option<EmbeddedFile> {
    #[cfg(feature = "embed-app")]
    {
        let file = <App as rust_embed::RustEmbed>::get(path)?;
        let hash = file
            .metadata
            .sha256_hash()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(EmbeddedFile {
            data: file.data,
            hash,
        })
    }
    #[cfg(not(feature = "embed-app"))]
    {
        let _ = path;
        None
    }
}

/// True when this binary carries the web app.
pub fn is_embedded() -> bool {
    embedded("index.html").is_some()
}

/// The embedded `index.html`, if any.
pub fn index_page() -> Option<Cow<'static, [u8]>> {
    embedded("index.html").map(|f| f.data)
}

/// The embedded asset `rel` (relative to `assets/`, already checked to be
/// a plain relative path), answered as the folder's assets are: the
/// gzipped copy to a client that takes gzip, cached for a year (every
/// asset name carries a content hash), with an ETag.
pub fn asset(req: &HttpRequest, rel: &str, accepts_gzip: bool) -> Option<HttpResponse> {
    let path = format!("assets/{rel}");
    let plain = embedded(&path)?;
    let gzipped = if accepts_gzip {
        embedded(&format!("{path}.gz"))
    } else {
        None
    };
    Some(respond(req, rel, plain, gzipped))
}

/// The response for an asset named `name` with bytes `plain`, or
/// `gzipped` instead when given. A request whose `If-None-Match` names
/// the ETag gets 304.
fn respond(
    req: &HttpRequest,
    name: &str,
    plain: EmbeddedFile,
    gzipped: Option<EmbeddedFile>,
) -> HttpResponse {
    let ext = name.rsplit_once('.').map_or("", |(_, ext)| ext);
    let mime = actix_files::file_extension_to_mime(ext);
    // The two encodings are different representations: different tags.
    let (body, etag, gzip) = match gzipped {
        Some(gz) => (gz.data, format!("\"{}-gz\"", gz.hash), true),
        None => (plain.data, format!("\"{}\"", plain.hash), false),
    };
    let mut response = if matches_etag(req, &etag) {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CONTENT_TYPE, mime.to_string()))
        .insert_header((header::ETAG, etag.clone()))
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .insert_header((header::VARY, "Accept-Encoding"));
    if gzip {
        response.insert_header((header::CONTENT_ENCODING, "gzip"));
    }
    if matches_etag(req, &etag) {
        return response.finish();
    }
    response.body(body)
}

/// True when `If-None-Match` lists `etag` (or is `*`).
fn matches_etag(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;
    use actix_web::test::TestRequest;

    use super::*;

    fn file(bytes: &'static [u8], hash: &str) -> EmbeddedFile {
        EmbeddedFile {
            data: Cow::Borrowed(bytes),
            hash: hash.to_owned(),
        }
    }

    fn body(r: HttpResponse) -> Vec<u8> {
        r.into_body()
            .try_into_bytes()
            .expect("a full body")
            .to_vec()
    }

    #[test]
    fn gzipped_copy_with_its_headers() {
        let req = TestRequest::default().to_http_request();
        let r = respond(
            &req,
            "app-1a2b.js",
            file(b"plain", "aa"),
            Some(file(b"GZ", "bb")),
        );
        assert_eq!(r.status(), 200);
        let h = r.headers();
        assert_eq!(h.get(header::CONTENT_ENCODING).expect("header"), "gzip");
        assert_eq!(
            h.get(header::CONTENT_TYPE).expect("header"),
            "text/javascript"
        );
        assert_eq!(
            h.get(header::CACHE_CONTROL).expect("header"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(h.get(header::VARY).expect("header"), "Accept-Encoding");
        assert_eq!(h.get(header::ETAG).expect("header"), "\"bb-gz\"");
        assert_eq!(body(r), b"GZ");
    }

    #[test]
    fn plain_without_gzip_and_304_for_a_known_tag() {
        let req = TestRequest::default().to_http_request();
        let r = respond(&req, "app.css", file(b"body{}", "cc"), None);
        assert_eq!(r.status(), 200);
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(
            r.headers().get(header::CONTENT_TYPE).expect("header"),
            "text/css"
        );
        assert_eq!(body(r), b"body{}");

        let req = TestRequest::default()
            .insert_header((header::IF_NONE_MATCH, "\"zz\", \"cc\""))
            .to_http_request();
        let r = respond(&req, "app.css", file(b"body{}", "cc"), None);
        assert_eq!(r.status(), 304);
        assert!(body(r).is_empty());
    }

    #[test]
    fn nothing_embedded_without_the_feature() {
        assert_eq!(is_embedded(), cfg!(feature = "embed-app"));
    }
}
