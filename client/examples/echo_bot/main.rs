//! A bot that joins a room and answers every person's message with `echo: <text>`.
//!
//! ```sh
//! cargo run -p roomcast-local &
//! export ROOMCAST_TOKEN=$(cargo run -q -p roomcast-local -- token --user echo-bot \
//!     --tenant acme --rooms 'support-*' --role service)
//! cargo run -p roomcast-client --example echo_bot -- support-1
//! ```
//!
//! `ROOMCAST_URL` overrides the server's address (default `ws://127.0.0.1:3001/`). The bot
//! keeps answering across server restarts: the client reconnects and resumes the room.

mod echo;

use roomcast_client::{Client, Config};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let room = std::env::args()
        .nth(1)
        .ok_or("usage: echo_bot <room> (with ROOMCAST_TOKEN set)")?;
    let token = std::env::var("ROOMCAST_TOKEN").map_err(|_| "set ROOMCAST_TOKEN to a JWT")?;
    let url = std::env::var("ROOMCAST_URL").unwrap_or_else(|_| "ws://127.0.0.1:3001/".into());
    let (client, mut events) = Client::connect(Config::new(url, token)).await?;
    println!("echo bot in {room}");
    echo::serve(&client, &mut events, &room, |ack| {
        println!("answered with seq {}", ack.seq);
    })
    .await?;
    Ok(())
}
