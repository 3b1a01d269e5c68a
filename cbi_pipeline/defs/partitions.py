import dagster as dg

from cbi_pipeline.core.vocabulary import HORIZON_LABELS

horizon_partitions = dg.StaticPartitionsDefinition(list(HORIZON_LABELS))

# As-of dates of the correlation cache, one per weekday, on the desk's calendar (Chicago, like the
# nightly schedule): the cycle builds the partition of the data's last date, which at 18:30 on a
# settlement day is today's, so end_offset=1 lists today's partition. They begin on 2001-05-28,
# the first weekday with the cache's longest window (365 daily returns) of sample history
# (from 2000-01-03): an earlier as-of date has no full-window correlations to offer.
AS_OF_START = "2001-05-28"
as_of_partitions = dg.TimeWindowPartitionsDefinition(
    start=AS_OF_START,
    fmt="%Y-%m-%d",
    cron_schedule="0 0 * * 1-5",
    timezone="America/Chicago",
    end_offset=1,
)
