//! kennel-oci: kennel behind runc's command line.

fn main() {
    let code = kennel_oci::run(std::env::args_os(), &kennel_oci::engine_ops::Engine);
    std::process::exit(code);
}
