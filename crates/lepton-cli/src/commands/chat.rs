//! `lepton chat MODEL`: an interactive conversation using the model's chat template, replies
//! streamed as they are generated. An empty line or end of input quits; `/reset` starts over.

use std::io::{BufRead, Write};

use lepton_llm::{ChatMessage, GenerationRequest};

use super::generate::{load_engine, sampling_params, stream};
use crate::cli::ChatArgs;

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let engine = load_engine(&args.model)?;
    let params = sampling_params(&args.sampling);
    let start: Vec<ChatMessage> = args
        .system
        .iter()
        .map(|s| ChatMessage::new("system", s.clone()))
        .collect();
    let mut messages = start.clone();
    eprintln!(
        "chatting with {} (empty line to quit, /reset to start over)",
        engine.model().name()
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        std::io::stderr().flush()?;
        let Some(line) = lines.next().transpose()? else {
            break;
        };
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        if line == "/reset" {
            messages = start.clone();
            continue;
        }
        messages.push(ChatMessage::new("user", line));
        let prompt = engine.model().apply_chat_template(&messages)?;
        match stream(
            &engine,
            GenerationRequest::new(prompt, params.clone()),
            true,
        ) {
            Ok((reply, _)) => {
                println!();
                messages.push(ChatMessage::new("assistant", reply));
            }
            Err(e) => {
                // Most often the conversation outgrew the context: say so and let the user reset.
                messages.pop();
                eprintln!("error: {e:#}");
            }
        }
    }
    Ok(())
}
