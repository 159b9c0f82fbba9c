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

/// Each instruction's `original` text parses back to the same instruction (cache
/// keys rely on it describing the instruction fully). Heredoc instructions are
/// skipped: their bodies are not part of `original`.
#[test]
fn original_text_round_trips() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut checked = 0;
    for entry in fs::read_dir(&root).expect("testdata directory exists") {
        let dir = entry.expect("readable testdata entry").path();
        let Ok(text) = fs::read_to_string(dir.join("Dockerfile")) else {
            continue;
        };
        let Ok(df) = berth_dockerfile::parse(&text) else {
            continue;
        };
        for inst in df.stages.iter().flat_map(|s| &s.instructions) {
            if inst.original.contains("<<") {
                continue;
            }
            let again = format!("# escape={}\nFROM x\n{}\n", df.escape, inst.original);
            let re = berth_dockerfile::parse(&again)
                .unwrap_or_else(|e| panic!("{}: {:?}: {e}", dir.display(), inst.original));
            assert_eq!(
                without_lines(&re.stages[0].instructions[0].kind),
                without_lines(&inst.kind),
                "{}: {:?}",
                dir.display(),
                inst.original
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} instructions checked");
}

fn without_lines(k: &berth_dockerfile::InstructionKind) -> berth_dockerfile::InstructionKind {
    let mut k = k.clone();
    if let berth_dockerfile::InstructionKind::Onbuild(o) = &mut k {
        o.trigger.start_line = 0;
        o.trigger.end_line = 0;
    }
    k
}
