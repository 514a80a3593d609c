//! The `tripletgen` binary: everything lives in the library; see `tripletgen::cli`.

fn main() -> std::process::ExitCode {
    tripletgen::cli::main()
}
