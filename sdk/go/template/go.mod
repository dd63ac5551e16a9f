module {{name}}

go 1.26

require example.invalid/shardline v0.1.0

require go.bytecodealliance.org/pkg v0.2.3 // indirect

// The Shardline guest SDK, vendored in sdk/go.
replace example.invalid/shardline => ./sdk/go
