module example.invalid/shardline

go 1.26

require go.bytecodealliance.org/pkg v0.2.3
