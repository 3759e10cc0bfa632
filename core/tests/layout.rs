//! records.h vs records.rs: a C compiler's sizeof/offsetof for every struct
//! and field must equal the Rust mirror's, so the two cannot drift.

use rcapture_core::records::layout_table;
use std::process::Command;

#[test]
fn c_header_matches_rust_layout() {
    let table = layout_table();
    let dir = std::env::temp_dir().join(format!("rcapture-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"records.h\"\nint main(void) {\n",
    );
    for (name, _, fields) in &table {
        c += &format!("printf(\"{name} %zu\\n\", sizeof(struct {name}));\n");
        for (f, _) in fields {
            c += &format!("printf(\"{name}.{f} %zu\\n\", offsetof(struct {name}, {f}));\n");
        }
    }
    c += "return 0; }\n";
    let src = dir.join("layout.c");
    let bin = dir.join("layout");
    std::fs::write(&src, c).unwrap();
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf/include");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-I", include, "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("running the C compiler {cc:?}: {e}"));
    assert!(
        out.status.success(),
        "C compile failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&bin).output().unwrap();
    let printed = String::from_utf8(run.stdout).unwrap();
    let mut expected = String::new();
    for (name, size, fields) in &table {
        expected += &format!("{name} {size}\n");
        for (f, off) in fields {
            expected += &format!("{name}.{f} {off}\n");
        }
    }
    assert_eq!(printed, expected, "records.h and records.rs disagree");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_kind_of_the_header_is_mirrored() {
    let header = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ebpf/include/records.h"
    ))
    .unwrap();
    let kinds: Vec<u16> = header
        .lines()
        .filter_map(|l| l.trim().strip_prefix("RC_KIND_"))
        .filter(|l| !l.starts_with("MAX"))
        .filter_map(|l| l.split('=').nth(1))
        .map(|v| {
            v.trim()
                .trim_end_matches(',')
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches(',')
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(kinds.len(), rcapture_core::records::RecordKind::ALL.len());
    for k in kinds {
        assert!(
            rcapture_core::records::RecordKind::from_u16(k).is_some(),
            "kind {k}"
        );
    }
}
