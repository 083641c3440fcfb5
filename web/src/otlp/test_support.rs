//! Test helpers: loading the captured OTLP fixtures from the shared fixtures directory.

use std::io::Read;
use std::path::PathBuf;

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures"
    ))
}

/// Names (without extension) of every protobuf fixture.
pub fn pb_fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".pb").map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// The exact request body of a fixture, gunzipped when its `.meta.json` says it was sent gzipped.
pub fn fixture_body(name: &str) -> Vec<u8> {
    let dir = fixtures_dir();
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join(format!("{name}.meta.json"))).expect("meta.json"),
    )
    .expect("meta json");
    let file = meta["body_file"].as_str().expect("body_file");
    let raw = std::fs::read(dir.join(file)).expect("body");
    match meta["content_encoding"].as_str() {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(raw.as_slice())
                .read_to_end(&mut out)
                .expect("gunzip");
            out
        }
        None => raw,
        Some(other) => panic!("unexpected content_encoding {other}"),
    }
}

/// The readable `.decoded.json` of a fixture.
pub fn fixture_decoded_json(name: &str) -> serde_json::Value {
    let path = fixtures_dir().join(format!("{name}.decoded.json"));
    serde_json::from_slice(&std::fs::read(path).expect("decoded.json")).expect("json")
}
