//! kennel-oci: kennel behind runc's command line.
#![cfg_attr(not(test), no_main)]

kennel_sys::entry_point!(run);

fn run() -> i32 {
    let code = kennel_oci::run(std::env::args_os(), &kennel_oci::engine_ops::Engine);
    // Rust's own exit path, which would flush it, is not taken.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    code
}
