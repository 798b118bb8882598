mod cli;
mod failures;
mod framing;
mod proxy;
