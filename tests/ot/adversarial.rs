//! Hostile and malformed ops: each is refused, and none can hang.

use super::*;

/// Refused by `serde_json::from_str::<RawOp>` or by `TextOp::parse`.
fn assert_refused(name: &str, json: String) {
    let shown: String = json.chars().take(80).collect();
    let result = within_deadline(name, move || parse(&json).map(|op| op.to_json()));
    if let Ok(op) = result {
        panic!("{name}: {shown} was accepted as {op}");
    }
}

#[test]
fn refuses_malformed_json_at_once() {
    let max_doc = OpLimits::default().max_document_chars;
    let cases: Vec<(&str, String)> = vec![
        ("float", "[1.5]".into()),
        ("integral float", "[1.0]".into()),
        ("exponent", "[1e3]".into()),
        ("negative float", "[-1.5]".into()),
        ("negative zero", "[-0]".into()),
        ("negative zero float", "[-0.0]".into()),
        ("zero", "[0]".into()),
        ("zero among others", "[1, 0, 1]".into()),
        ("NaN", "[NaN]".into()),
        ("Infinity", "[Infinity]".into()),
        ("hex", "[0x10]".into()),
        ("leading plus", "[+1]".into()),
        ("leading zero", "[01]".into()),
        ("object", "[{}]".into()),
        ("object component", r#"[{"retain": 1}]"#.into()),
        ("nested array", "[[1]]".into()),
        ("empty nested array", "[[]]".into()),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        ),
        ("null", "[null]".into()),
        ("true", "[true]".into()),
        ("false", "[false, 1]".into()),
        ("top-level object", "{}".into()),
        ("object wrapping ops", r#"{"ops": [1]}"#.into()),
        ("top-level string", r#""abc""#.into()),
        ("top-level number", "3".into()),
        ("top-level null", "null".into()),
        ("top-level boolean", "true".into()),
        ("empty input", String::new()),
        ("truncated", "[1,".into()),
        ("trailing comma", "[1,]".into()),
        ("missing comma", "[1 2]".into()),
        ("trailing data", "[1] [2]".into()),
        ("lone surrogate", r#"["\ud800"]"#.into()),
        ("u64::MAX", "[18446744073709551615]".into()),
        ("above u64::MAX", "[18446744073709551616]".into()),
        ("i64::MAX + 1", "[9223372036854775808]".into()),
        ("i64::MIN", "[-9223372036854775808]".into()),
        ("below i64::MIN", "[-9223372036854775809]".into()),
        (
            "u64::MAX retain wrapping to 3",
            "[18446744073709551615, 4]".into(),
        ),
        (
            "the crate's known hang",
            "[-9223372036854775808, 9223372036854775809]".into(),
        ),
        (
            "i64::MIN then i64::MAX",
            "[-9223372036854775808, 9223372036854775807]".into(),
        ),
        (
            "sum over i64",
            "[9223372036854775807, 9223372036854775807]".into(),
        ),
        (
            "retain and delete of i64::MAX",
            "[9223372036854775807, -9223372036854775807, 2]".into(),
        ),
        (
            "sum wrapping u64 to zero",
            format!("[{0}, {0}, {0}, {0}]", 1u64 << 62),
        ),
        ("2^53 + 1", "[9007199254740993]".into()),
        (
            "one past the largest document",
            format!("[{}]", max_doc + 1),
        ),
        (
            "deletes summing past the largest document",
            format!("[-{}, -{}]", max_doc / 2, max_doc / 2 + 1),
        ),
        (
            "retains summing past the largest document",
            format!("[{max_doc}, \"x\", 1]"),
        ),
    ];
    for (name, json) in cases {
        assert_refused(name, json);
    }
}

#[test]
fn limits_are_exact() {
    let limits = OpLimits::default();
    let ones = |n: usize| format!("[{}]", vec!["1"; n].join(","));
    parse(&ones(limits.max_components)).expect("exactly the most components");
    assert_eq!(
        parse(&ones(limits.max_components + 1)).map(|_| ()),
        Err(format!(
            "parse: {}",
            OtError::TooManyComponents {
                max: limits.max_components
            }
        ))
    );

    let insert = |n: usize| serde_json::to_string(&"a".repeat(n)).expect("string");
    let max_ins = limits.max_insert_chars;
    parse(&format!("[{}]", insert(max_ins))).expect("exactly the largest insert");
    let too_large = Err(format!(
        "parse: {}",
        OtError::InsertTooLarge { max: max_ins }
    ));
    assert_eq!(
        parse(&format!("[{}]", insert(max_ins + 1))).map(|_| ()),
        too_large
    );
    let split = format!("[{}, 3, {}]", insert(max_ins / 2), insert(max_ins / 2 + 1));
    assert_eq!(parse(&split).map(|_| ()), too_large, "inserts add up");

    let max_doc = limits.max_document_chars;
    assert_eq!(
        parse(&format!("[{max_doc}]")).expect("span").base_len(),
        max_doc
    );
    assert_eq!(
        parse(&format!("[-{max_doc}]")).expect("span").base_len(),
        max_doc
    );
    assert!(parse(&format!("[{}, -1]", max_doc - 1)).is_ok());
    assert!(parse(&format!("[{max_doc}, -1]")).is_err());
}

#[test]
fn largest_valid_ops_transform_and_compose_promptly() {
    let max_doc = OpLimits::default().max_document_chars;
    within_deadline("largest spans", move || {
        let keep = parse(&format!("[{max_doc}]")).expect("retain all");
        let wipe = parse(&format!("[-{max_doc}]")).expect("delete all");
        let mid = parse(&format!("[1, \"😀\", -{}, 1]", max_doc - 2)).expect("mid");
        for (a, b) in [(&keep, &wipe), (&wipe, &mid), (&mid, &keep), (&mid, &mid)] {
            let (a2, b2) = a.transform(b).expect("same base");
            assert_eq!(a2.base_len(), b.target_len());
            assert_eq!(b2.base_len(), a.target_len());
        }
        assert_eq!(wipe.compose(&TextOp::identity(0)).expect("composes"), wipe);
        assert_eq!(keep.compose(&mid).expect("composes"), mid);
    });
}

#[test]
fn apply_refuses_length_mismatch_and_keeps_text() {
    for (doc, json) in [
        ("😀", "[2]"),            // UTF-16 units, not characters
        ("👍🏽", "[1]"),            // two code points
        ("e\u{301}", "[-1]"),     // combining mark is its own character
        ("a\r\nb", "[1, -1, 1]"), // CRLF is two characters
        ("漢字", "[3]"),
        ("", "[1]"),
        ("abc", r#"["x"]"#),
    ] {
        let op = parse(json).expect("well-formed");
        let mut rope = Rope::from_str(doc);
        let err = op.apply(&mut rope, usize::MAX).expect_err(json);
        assert!(
            matches!(err, OtError::LengthMismatch { .. }),
            "{doc:?} {json}: {err:?}"
        );
        assert_eq!(rope.to_string(), doc, "{json} changed the text");
    }
}

#[test]
fn transform_and_compose_refuse_mismatched_lengths() {
    let two = parse("[2]").expect("op");
    let three = parse(r#"[3, "x"]"#).expect("op");
    assert!(matches!(
        two.transform(&three),
        Err(OtError::LengthMismatch { .. })
    ));
    assert!(matches!(
        three.transform(&two),
        Err(OtError::LengthMismatch { .. })
    ));
    // `three` ends with 4 characters, `two` needs 2.
    assert!(matches!(
        three.compose(&two),
        Err(OtError::LengthMismatch { .. })
    ));
    assert!(matches!(
        two.compose(&three),
        Err(OtError::LengthMismatch { .. })
    ));
}

/// `max_insert_chars` counts characters, so an insert of fewer characters
/// than the limit is accepted however many bytes they take.
#[test]
fn insert_limit_counts_characters_not_bytes() {
    let limits = OpLimits {
        max_components: 10,
        max_insert_chars: 3,
        max_document_chars: 10,
    };
    let op = parse_with(r#"["😀"]"#, &limits).expect("one character is within 3");
    assert_eq!(op.target_len(), 1);
    parse_with(r#"["漢字"]"#, &limits).expect("two characters (6 bytes) are within 3");
}
