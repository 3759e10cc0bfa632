//! Compiles `event.proto` with protox (pure Rust): no system `protoc` needed.
fn main() {
    println!("cargo:rerun-if-changed=event.proto");
    let fds = protox::compile(["event.proto"], ["."]).expect("event.proto must compile");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("prost code generation");
}
