//! The `breakglass` binary: parse flags, run the command, map errors to exit codes.

use clap::FromArgMatches;

fn main() -> std::process::ExitCode {
    let matches = breakglass::cli::command().get_matches();
    let cli = match breakglass::cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut breakglass::cli::command()).exit(),
    };
    let format = cli.global.output;
    // Errors stay on one line each (greppable in logs); color only when wanted.
    let no_color = cli.global.no_color || std::env::var_os("NO_COLOR").is_some();
    let _ = miette::set_hook(Box::new(move |_| {
        let mut opts = miette::MietteHandlerOpts::new().wrap_lines(false);
        if no_color {
            opts = opts.color(false);
        }
        Box::new(opts.build())
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(breakglass::commands::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => breakglass::commands::report_error(format, e),
    };
    std::process::ExitCode::from(code as u8)
}
