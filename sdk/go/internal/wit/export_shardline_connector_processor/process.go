// Package export_shardline_connector_processor is where the generated export glue
// (../wit_exports) finds the processor's implementation. Not generated: the shardline
// package sets Handler in its init, which keeps the generated code free of an import
// cycle.
package export_shardline_connector_processor

import "example.invalid/shardline/internal/wit/shardline_connector_types"

// Handler runs one batch; set by the shardline package.
var Handler func(shardline_connector_types.BatchContext, []shardline_connector_types.SourceRecord) shardline_connector_types.Processed

// Process is the `process` export of the pipeline world.
func Process(ctx shardline_connector_types.BatchContext, records []shardline_connector_types.SourceRecord) shardline_connector_types.Processed {
	return Handler(ctx, records)
}
