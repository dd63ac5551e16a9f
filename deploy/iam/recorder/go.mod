module shardline.invalid/deploy/iam/recorder

go 1.26
