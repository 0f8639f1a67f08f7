// Builds the C++ shim that gives Rust compound reads with list_watchers.
fn main() {
    println!("cargo:rerun-if-changed=src/ceph/shim.cc");
    cc::Build::new()
        .cpp(true)
        .file("src/ceph/shim.cc")
        .flag_if_supported("-std=c++17")
        .flag_if_supported("-Wno-deprecated-declarations")
        .compile("rbdx_shim");
    println!("cargo:rustc-link-lib=rados");
}
