use std::process::ExitCode;

use phone_auth::{app, config::Config, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env is fine: the environment alone may configure everything.
    let _ = dotenvy::dotenv();
    telemetry::init();

    if std::env::args().nth(1).as_deref() == Some("print-schema") {
        print!("{}", phone_auth::graphql::schema::sdl());
        return ExitCode::SUCCESS;
    }

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("phone-auth: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    match app::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("phone-auth: {err:#}");
            ExitCode::FAILURE
        }
    }
}
