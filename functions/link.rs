//! The build script of every function (and of the cold-start baseline in bench/): links the
//! bootstrap as a position-dependent executable (`-no-pie`). The code stays position-independent,
//! but the executable is loaded at its link address, so the 0.5 MB of load-time relocations a PIE
//! carries (`.rela.dyn`: one entry per absolute pointer, every vtable and string table) is resolved
//! by the linker instead: a smaller bootstrap and nothing to relocate at each cold start
//! (docs/performance.md, "Binary size"). Lambda loads it like any ELF executable; only ASLR of the
//! executable's own image is given up (the heap, stacks and libraries are still randomised).
/// `DATAFLOWS_PIE=1` at build time links a PIE as before, to measure the difference.
fn main() {
    println!("cargo:rerun-if-env-changed=DATAFLOWS_PIE");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") && std::env::var_os("DATAFLOWS_PIE").is_none() {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
