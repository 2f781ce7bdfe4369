//! Release builds link the server's code in the order of `link/symbol-order.txt`: the
//! functions a server runs (recorded by `scripts/symbol-order.sh`), hottest first, ahead of
//! the rest. Left in the default order they are spread over ~108 MiB of code, so a server
//! that answers one query maps most of it (each page it runs brings its neighbours); laid out
//! together, a few MiB. A name the build does not have (code changed since the file was
//! written) is skipped. Only the linker's layout changes: the same code either way.

fn main() {
    let order = "link/symbol-order.txt";
    println!("cargo:rerun-if-changed={order}");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if release && linux {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        // rust-lld, Rust's default linker on x86-64 Linux, takes these through the C driver.
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={dir}/{order}");
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        // Relative relocations packed (DT_RELR, glibc 2.36+): ~6 MiB of them otherwise, which
        // the dynamic loader reads, so maps, at every start.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
