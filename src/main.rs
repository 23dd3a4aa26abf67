//! `udprange`: parse, run, exit. All the work lives in the library (`udprange::cli`).

fn main() {
    let code = udprange::cli::run(
        std::env::args_os(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
