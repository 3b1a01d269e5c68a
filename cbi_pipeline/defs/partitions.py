import dagster as dg

from cbi_pipeline.core.horizons import HORIZON_LABELS

horizon_partitions = dg.StaticPartitionsDefinition(list(HORIZON_LABELS))
