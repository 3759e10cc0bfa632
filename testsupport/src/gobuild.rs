//! Builds the Go test programs of `tests/support/gotls/` with the system's
//! `go` (Debian's golang-go), standard library only: no module download,
//! the build cache under the cargo target directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// How a Go program is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GoVariant {
    /// `go build`: symbol table, non-PIE.
    Plain,
    /// `-ldflags='-s -w'`: no symbol table, no DWARF.
    Stripped,
    /// `-buildmode=pie`.
    Pie,
    /// `-buildmode=pie -ldflags='-s -w'`.
    PieStripped,
}

impl GoVariant {
    /// Every variant.
    pub const ALL: [GoVariant; 4] = [Self::Plain, Self::Stripped, Self::Pie, Self::PieStripped];

    /// A short name (directory names, messages).
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Stripped => "stripped",
            Self::Pie => "pie",
            Self::PieStripped => "pie-stripped",
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Self::Plain => &[],
            Self::Stripped => &["-ldflags=-s -w"],
            Self::Pie => &["-buildmode=pie"],
            Self::PieStripped => &["-buildmode=pie", "-ldflags=-s -w"],
        }
    }

    /// Whether the binary keeps its ELF symbol table.
    pub fn has_symbols(self) -> bool {
        matches!(self, Self::Plain | Self::Pie)
    }

    /// Whether the binary is position-independent.
    pub fn is_pie(self) -> bool {
        matches!(self, Self::Pie | Self::PieStripped)
    }
}

/// The workspace root (this crate's parent directory).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testsupport is in the workspace")
        .to_path_buf()
}

/// Where the builds and Go's caches go: `$CARGO_TARGET_DIR/go-tests`, or
/// `target/go-tests` in the workspace.
fn out_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("go-tests")
}

/// The test program (HTTPS server and client in one binary) of
/// `tests/support/gotls/main.go`, built once per process and variant.
/// Its executable is named `gotls_test_prog` (its `comm`).
pub fn gotls_test_prog(variant: GoVariant) -> PathBuf {
    build("gotls", "gotls_test_prog", variant)
}

/// `tests/support/gotls/notls/main.go`: a Go program without crypto/tls.
pub fn go_program_without_tls() -> PathBuf {
    build("gotls/notls", "go_no_tls", GoVariant::Plain)
}

/// `go build` of `tests/support/SOURCE/main.go` into
/// `go-tests/VARIANT/NAME`; panics (with go's output) if it fails.
fn build(source: &str, name: &str, variant: GoVariant) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<(String, GoVariant, PathBuf)>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, p)) = built.iter().find(|(s, v, _)| s == source && *v == variant) {
        return p.clone();
    }
    let out = out_dir();
    let dir = out.join(variant.name());
    std::fs::create_dir_all(&dir).expect("creating the Go output directory");
    let exe = dir.join(name);
    // Built under a temporary name and renamed: another test process may
    // be running the previous build.
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let src = workspace()
        .join("tests/support")
        .join(source)
        .join("main.go");
    let output = Command::new("go")
        .arg("build")
        .args(variant.flags())
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .env("GOCACHE", out.join("gocache"))
        .env("GOPATH", out.join("gopath"))
        .env("GO111MODULE", "off")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .output()
        .unwrap_or_else(|e| {
            panic!("running `go build` ({e}): the Go tests need Go (apt-get install golang-go)")
        });
    assert!(
        output.status.success(),
        "go build {} of {}: {}",
        variant.name(),
        src.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&tmp, &exe).expect("renaming the Go build");
    built.push((source.to_owned(), variant, exe.clone()));
    exe
}

/// `go env GOVERSION`, e.g. `go1.19.8`.
pub fn go_version() -> String {
    let out = Command::new("go")
        .args(["env", "GOVERSION"])
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("running `go env GOVERSION`");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
