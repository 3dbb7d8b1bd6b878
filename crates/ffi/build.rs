//! Builds the reference C drivers (`drivers/sim.c`, `drivers/faulty.c`) into
//! shared objects in `OUT_DIR`, the form vendor drivers ship in.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=include/sensegate_driver.h");
    println!("cargo:rerun-if-changed=drivers/config.h");
    for driver in ["sim", "faulty"] {
        let source = format!("drivers/{driver}.c");
        println!("cargo:rerun-if-changed={source}");
        shared_object(
            &source,
            &out.join(format!("libsg_{driver}.so")),
            &out.join(format!("obj-{driver}")),
        );
    }
}

/// Compiles one C file with `cc` (so its toolchain and flags are honoured) and
/// links the object into a shared object.
fn shared_object(source: &str, target: &Path, objects_dir: &Path) {
    let mut build = cc::Build::new();
    build
        .file(source)
        .include("include")
        .pic(true)
        .std("c11")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .out_dir(objects_dir);
    let objects = build.compile_intermediates();
    let compiler = build.get_compiler();
    let mut link: Command = compiler.to_command();
    link.arg("-shared")
        .arg("-o")
        .arg(target)
        .args(&objects)
        .arg("-lm");
    let status = link.status().expect("run the C compiler to link a driver");
    assert!(status.success(), "linking {} failed", target.display());
}
