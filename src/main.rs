//! `udprange`: parse, run, exit. All the work lives in the library (`udprange::cli`).

fn main() {
    // Unlocked handles: each write takes the lock for itself. Holding `stderr().lock()` for
    // the whole run would deadlock the progress bar, which draws to stderr from worker
    // threads.
    let code = udprange::cli::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    std::process::exit(code);
}
