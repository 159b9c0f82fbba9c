//! Golden-file tests: every `testdata/<case>/Dockerfile` is parsed and compared with
//! `testdata/<case>/result` (the `{:#?}` dump of the parse result) or, for cases that
//! must fail, with `testdata/<case>/error` (the error's display text).
//!
//! Set `BERTH_UPDATE_GOLDEN=1` to (re)write the expected files after a reviewed
//! change.

use std::fs;
use std::path::Path;

#[test]
fn golden_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let update = std::env::var_os("BERTH_UPDATE_GOLDEN").is_some();
    let mut dirs: Vec<_> = fs::read_dir(&root)
        .expect("testdata directory exists")
        .map(|e| e.expect("readable testdata entry").path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() > 20,
        "expected many golden cases, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let text = fs::read_to_string(dir.join("Dockerfile")).expect("utf-8 Dockerfile");
        let (file, got) = match berth_dockerfile::parse(&text) {
            Ok(df) => ("result", format!("{df:#?}\n")),
            Err(e) => ("error", format!("{e}\n")),
        };
        let other = if file == "result" { "error" } else { "result" };
        let path = dir.join(file);
        if update {
            fs::write(&path, &got).expect("write golden file");
            let _ = fs::remove_file(dir.join(other));
            continue;
        }
        match fs::read_to_string(&path) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!(
                "{name}: {file} differs\n--- want\n{want}\n--- got\n{got}"
            )),
            Err(_) => failures.push(format!("{name}: expected {other} but got {file}:\n{got}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
