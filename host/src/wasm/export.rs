//! The stage interfaces of the `shardline:connector` package a component can export.

use std::fmt;

/// A stage interface a component can export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    Processor,
    Deserializer,
    Transformer,
    Router,
}

impl Export {
    pub const ALL: [Export; 4] = [
        Export::Processor,
        Export::Deserializer,
        Export::Transformer,
        Export::Router,
    ];

    /// Fully qualified interface name, as `wasm-tools component wit` prints it.
    pub fn interface(self) -> &'static str {
        match self {
            Export::Processor => "shardline:connector/processor@0.1.0",
            Export::Deserializer => "shardline:connector/deserializer@0.1.0",
            Export::Transformer => "shardline:connector/transformer@0.1.0",
            Export::Router => "shardline:connector/router@0.1.0",
        }
    }
}

impl fmt::Display for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.interface())
    }
}
