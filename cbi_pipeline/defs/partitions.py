import dagster as dg

from cbi_pipeline.core.vocabulary import HORIZON_LABELS

horizon_partitions = dg.StaticPartitionsDefinition(list(HORIZON_LABELS))

# As-of dates of the correlation cache: one partition per weekday from the sample's first day;
# end_offset=1 lists today's partition too, so data up to today has a partition to land in.
as_of_partitions = dg.TimeWindowPartitionsDefinition(
    start="2000-01-03", fmt="%Y-%m-%d", cron_schedule="0 0 * * 1-5", end_offset=1
)
