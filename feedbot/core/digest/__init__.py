"""Weekly digests, one idea per module.

- `periods`: ISO weeks in the digest's timezone and their bounds.
- `schedules`: which channels get which digest, and since when they may.
- `runs`: the claim that makes each digest go out once per period.
- `figures`: the week's numbers (`build_digest`), counted in SQL.
- `themes`: recurring themes, clustered from the week's key terms.
- `you_said_we_did`: what was solved, for everyone.
- `spreadsheet`: the week as CSV.
- `results`: the plain data every one of them returns.
"""

from feedbot.core.digest.elapsed import percentile, seconds_between
from feedbot.core.digest.figures import LIST_LIMIT, TREND_WEEKS, build_digest
from feedbot.core.digest.periods import (
    COUNTED,
    OPEN,
    local_midnight,
    monday,
    parse_period,
    period_of,
    shift,
    week_bounds,
)
from feedbot.core.digest.results import (
    Count,
    Digest,
    Durations,
    ReportLine,
    ReportList,
    Resolution,
    RouteLine,
    Theme,
    Trend,
    YouSaidWeDid,
)
from feedbot.core.digest.runs import already_sent, claim_run
from feedbot.core.digest.schedules import (
    DigestChannel,
    DigestKind,
    Schedule,
    configured_since,
    covers_only_configured_time,
    digest_channels,
    forget_unsubscribed,
)
from feedbot.core.digest.spreadsheet import CSV_COLUMNS, week_csv
from feedbot.core.digest.you_said_we_did import build_you_said_we_did

__all__ = [
    "COUNTED",
    "CSV_COLUMNS",
    "LIST_LIMIT",
    "OPEN",
    "TREND_WEEKS",
    "Count",
    "Digest",
    "DigestChannel",
    "DigestKind",
    "Durations",
    "ReportLine",
    "ReportList",
    "Resolution",
    "RouteLine",
    "Schedule",
    "Theme",
    "Trend",
    "YouSaidWeDid",
    "already_sent",
    "build_digest",
    "build_you_said_we_did",
    "claim_run",
    "configured_since",
    "covers_only_configured_time",
    "digest_channels",
    "forget_unsubscribed",
    "local_midnight",
    "monday",
    "parse_period",
    "percentile",
    "period_of",
    "seconds_between",
    "shift",
    "week_bounds",
    "week_csv",
]
