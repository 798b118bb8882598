mod audit;
mod cli;
mod failures;
mod framing;
mod guard;
mod identity;
mod proxy;
mod redaction;
