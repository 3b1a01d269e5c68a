"""Compare the sample futures curve with the real dev curve file and re-derive its constants.

Run from the repository root:

    .venv/bin/python cbi_pipeline_tests/benchmarks/sample_curve_calibration.py [--seeds N] [--derive]

The real file is ``../shared/data/real/dev_curve_1995_2010.csv`` relative to the repository root,
or the path in ``CBI_REAL_CURVE``. When it is absent the script says so and exits 0.

Printed, per symbol, real vs sample (default spec and seed, ``today`` 2026-12-02): the carry (the
annualised log spread between the 1st and 2nd nearest contracts, ``log(c2 / c1)`` over the years
between their expiries): mean, sd and daily AR(1); the share of contango (c2 > c1) and
backwardation (c2 < c1) days; contracts per date; the median number of business days before
the nearest's expiry (and before its first notice day) at which the 2nd nearest's open
interest first exceeds the nearest's, and the share of contracts overtaken before their first
notice day; the sd of a contract's own daily return on the day it becomes the nearest (where the
sample's gap-free front series puts the roll gap) and on other days; then the mean carry by the
earlier leg's delivery month. Carry is measured on the
whole real file (1995-2010); the roll figures on 2000-2010, when CBOT's last trade date was the
business day before the 15th, the rule the sample uses.
``--seeds N`` repeats the summary for seeds 0..N-1. ``--derive`` prints the real-data constants
as hard-coded in ``core/sample/curve_calibration.py`` (paste them below its ``# --- Measured
on`` line).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from cbi_pipeline.core.curves.roll import first_notice_day
from cbi_pipeline.core.sample.curve import front_volume_level, skew_transform
from cbi_pipeline.core.sample.curve_calibration import CONTRACT_MONTHS, CURVE_SYMBOLS
from cbi_pipeline.core.sample.generator import SampleSpec, generate_sample_market

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REAL = REPO_ROOT.parent / "shared" / "data" / "real" / "dev_curve_1995_2010.csv"
ROLL_FROM = dt.date(2000, 1, 1)  # CBOT's last trade date is the business day before the 15th
TODAY = dt.date(2026, 12, 2)
# Business days to expiry: the buckets of the open-interest and volume profiles.
PROFILE_EDGES = (
    *(0, 1, 2, 3, 5, 7, 10, 13, 16, 19, 22, 25, 30, 35, 40, 50, 60, 80, 100, 130),
    *(160, 200, 260, 330, 400),
)
MIN_BUCKET_ROWS = 10


def real_path() -> Path:
    env = os.environ.get("CBI_REAL_CURVE")
    return Path(env) if env else DEFAULT_REAL


def load_real(path: Path) -> pl.DataFrame:
    numeric = {c: pl.Float64 for c in ("close", "volume", "open_interest")}
    frame = pl.read_csv(path, schema_overrides=numeric, try_parse_dates=True)
    return frame.with_columns(pl.col("date").cast(pl.Date), pl.col("expiry").cast(pl.Date))


def with_positions(curve: pl.DataFrame) -> pl.DataFrame:
    """Adds ``k`` (1 = nearest by expiry on the date), ``month`` (the code's month letter),
    ``next_contract``, ``carry`` (annualised log spread to the next contract quoted that day)
    and ``to_expiry`` (business days from the date to the expiry)."""
    by_day = ("symbol", "date")
    years = (pl.col("expiry").shift(-1) - pl.col("expiry")).dt.total_days() / 365.25
    return (
        curve.sort("symbol", "date", "expiry")
        .with_columns(
            k=pl.int_range(1, pl.len() + 1).over(by_day),
            month=pl.col("contract").str.slice(-5, 1),
            next_contract=pl.col("contract").shift(-1).over(by_day),
            next_close=pl.col("close").shift(-1).over(by_day),
            carry=((pl.col("close").shift(-1).log() - pl.col("close").log()) / years).over(by_day),
            to_expiry=pl.business_day_count(pl.col("date"), pl.col("expiry")),
        )
        .with_columns(next_month=pl.col("next_contract").str.slice(-5, 1))
    )


def consecutive_pairs(curve: pl.DataFrame) -> pl.DataFrame:
    """Rows whose next contract is the next listed month (a day missing a contract has a
    longer spread, left out of the per-month tables)."""
    nxt = {
        s: {m: ms[(i + 1) % len(ms)] for i, m in enumerate(ms)} for s, ms in CONTRACT_MONTHS.items()
    }
    expected = pl.struct("symbol", "month").map_elements(
        lambda r: nxt.get(r["symbol"], {}).get(r["month"]), return_dtype=pl.String
    )
    return curve.filter(pl.col("carry").is_not_null()).filter(pl.col("next_month") == expected)


def carry_summary(pos: pl.DataFrame) -> pl.DataFrame:
    """Per symbol: the 1st-2nd carry's mean, sd, AR(1) over consecutive dates; contango and
    backwardation shares; median contracts per date."""
    first = pos.filter(pl.col("k") == 1).sort("symbol", "date")
    first = first.with_columns(lag=pl.col("carry").shift(1).over("symbol"))
    counts = (
        pos.group_by("symbol", "date")
        .len()
        .group_by("symbol")
        .agg(pl.col("len").median().alias("contracts"))
    )
    return (
        first.filter(pl.col("carry").is_not_null())
        .group_by("symbol")
        .agg(
            pl.col("carry").mean().alias("mean"),
            pl.col("carry").std().alias("sd"),
            pl.corr("carry", "lag").alias("ar1"),
            (pl.col("next_close") > pl.col("close")).mean().alias("contango"),
            (pl.col("next_close") < pl.col("close")).mean().alias("backwardation"),
        )
        .join(counts, on="symbol")
    )


def oi_crossover(pos: pl.DataFrame) -> pl.DataFrame:
    """Per nearest contract observed through its expiry: the first date on which the 2nd
    nearest's open interest exceeds the nearest's, as business days before the nearest's
    expiry and before its first notice day (negative: after it). Contracts never overtaken
    have nulls."""
    two = pos.filter(pl.col("k") <= 2).select(
        "symbol", "date", "k", "contract", "expiry", "open_interest", "to_expiry"
    )
    near = two.filter(pl.col("k") == 1).drop("k")
    second = two.filter(pl.col("k") == 2).select(
        "symbol", "date", pl.col("open_interest").alias("oi2")
    )
    joined = near.join(second, on=["symbol", "date"])
    last_day = pos.group_by("symbol").agg(pl.col("date").max().alias("_last"))
    per = (
        joined.join(last_day, on="symbol")
        .filter(pl.col("expiry") <= pl.col("_last"))
        .sort("symbol", "contract", "date")
        .group_by("symbol", "contract")
        .agg(
            pl.col("expiry").first(),
            pl.col("date").filter(pl.col("oi2") > pl.col("open_interest")).first().alias("over"),
            pl.col("to_expiry")
            .filter(pl.col("oi2") > pl.col("open_interest"))
            .first()
            .alias("before_expiry"),
        )
    )
    fnd = pl.Series("fnd", [first_notice_day(c) for c in per["contract"]], dtype=pl.Date)
    return per.with_columns(fnd).with_columns(
        before_fnd=pl.business_day_count(pl.col("over"), pl.col("fnd"))
    )


def roll_summary(pos: pl.DataFrame) -> pl.DataFrame:
    cross = oi_crossover(pos)
    return cross.group_by("symbol").agg(
        pl.len().alias("n_contracts"),
        pl.col("before_expiry").median().alias("cross_expiry"),
        pl.col("before_fnd").median().alias("cross_fnd"),
        (pl.col("before_fnd") > 0).fill_null(False).mean().alias("before_fnd_share"),
    )


def front_handover(pos: pl.DataFrame) -> pl.DataFrame:
    """Per symbol: the sd of a contract's own daily log return on the day it becomes the
    nearest (the old nearest expired), and on the other days it is the 1st or 2nd nearest. The
    sample's front series has no roll gap, so the gap shows in the new nearest's own return."""
    own = pos.sort("symbol", "contract", "date").with_columns(
        r=pl.col("close").log().diff().over("symbol", "contract"),
        prev_k=pl.col("k").shift(1).over("symbol", "contract"),
    )
    became = (pl.col("k") == 1) & (pl.col("prev_k") == 2)
    return (
        own.filter(pl.col("r").is_not_null() & (pl.col("k") <= 2))
        .group_by("symbol")
        .agg(
            pl.col("r").filter(became).std().alias("handover_sd"),
            pl.col("r").filter(~became).std().alias("other_sd"),
        )
    )


def month_carry(pairs: pl.DataFrame) -> pl.DataFrame:
    return pairs.group_by("symbol", "month").agg(
        pl.col("carry").mean().alias("mean"),
        pl.col("carry").std().alias("sd"),
        pl.col("carry").median().alias("median"),
        pl.len(),
    )


def summary(curve: pl.DataFrame, roll_from: dt.date | None = None) -> pl.DataFrame:
    pos = with_positions(curve)
    roll_pos = pos if roll_from is None else pos.filter(pl.col("date") >= roll_from)
    return (
        carry_summary(pos)
        .join(roll_summary(roll_pos), on="symbol")
        .join(front_handover(pos), on="symbol")
        .sort("symbol")
    )


COLUMNS = (  # header, summary column, format
    ("carry mean", "mean", "+.3f"),
    ("carry sd", "sd", ".3f"),
    ("AR(1)", "ar1", ".3f"),
    ("contango", "contango", ".2f"),
    ("backw.", "backwardation", ".2f"),
    ("n/date", "contracts", ".0f"),
    ("OI cross bd<expiry", "cross_expiry", ".1f"),
    ("bd<FND", "cross_fnd", ".1f"),
    ("crossed<FND", "before_fnd_share", ".2f"),
)


def print_comparison(real: pl.DataFrame, sample: pl.DataFrame) -> None:
    """One real and one sample line per symbol, as a markdown table."""
    print("| symbol | source | " + " | ".join(h for h, _, _ in COLUMNS) + " |")
    print("|---|---|" + "---:|" * len(COLUMNS))
    for sym in CURVE_SYMBOLS:
        for name, table in (("real", real), ("sample", sample)):
            row = table.filter(pl.col("symbol") == sym).row(0, named=True)
            cells = " | ".join(format(row[key], fmt) for _, key, fmt in COLUMNS)
            print(f"| {sym if name == 'real' else ''} | {name} | {cells} |")


def print_handover(real: pl.DataFrame, sample: pl.DataFrame) -> None:
    print(
        "\nsd of a contract's own daily log return on the day it becomes the nearest / on its "
        "other days as 1st or 2nd nearest:"
    )
    for sym in CURVE_SYMBOLS:
        r = real.filter(pl.col("symbol") == sym).row(0, named=True)
        s = sample.filter(pl.col("symbol") == sym).row(0, named=True)
        print(
            f"  {sym}: real {r['handover_sd']:.4f} / {r['other_sd']:.4f}, "
            f"sample {s['handover_sd']:.4f} / {s['other_sd']:.4f}"
        )


def print_month_carry(real: pl.DataFrame, sample: pl.DataFrame) -> None:
    print("\nMean carry by the earlier leg's delivery month (consecutive listed months):")
    for sym in CURVE_SYMBOLS:
        for name, table in (("real", real), ("sample", sample)):
            rows = {
                r["month"]: r["mean"]
                for r in table.filter(pl.col("symbol") == sym).iter_rows(named=True)
            }
            cells = " ".join(
                f"{m} {rows[m]:+.2f}" if m in rows else f"{m}   -  " for m in CONTRACT_MONTHS[sym]
            )
            print(f"  {sym} {name:<7}{cells}")


# --- derive -------------------------------------------------------------------------------------


def solve_skew(median_z: float) -> float:
    """The ``lam`` in [-1, 1] (where the median rises with ``lam``) whose standardised skew
    transform has the given median (bisection)."""
    lo, hi = -1.0, 1.0
    for _ in range(80):
        mid = (lo + hi) / 2.0
        if float(skew_transform(np.zeros(1), mid)[0]) < median_z:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def carry_cells(pairs: pl.DataFrame) -> pl.DataFrame:
    """Per symbol, delivery month of the earlier leg and position ``k`` of the earlier leg: the
    mean calendar days from the date to the earlier leg's expiry, the carry's mean, sd and the
    skew whose median matches the cell's standardised median."""
    cells = pairs.group_by("symbol", "month", "k").agg(
        (pl.col("expiry") - pl.col("date")).dt.total_days().mean().alias("days"),
        pl.col("carry").mean().alias("mu"),
        pl.col("carry").std().alias("sd"),
        ((pl.col("carry").median() - pl.col("carry").mean()) / pl.col("carry").std()).alias("mz"),
        pl.len(),
    )
    return cells.with_columns(
        skew=pl.col("mz").map_elements(solve_skew, return_dtype=pl.Float64)
    ).drop("mz")


def carry_constants(pos: pl.DataFrame) -> dict[str, dict[str, object]]:
    """Per symbol: the (days, mean, sd, skew) knots by month; the daily AR(1) of the
    standardised carry within one contract pair on the far positions (``phi``) and the share of
    the nearest pair's variance that is day-to-day noise, ``1 - AR(1) at k=1 / phi``; the
    standardised carry's correlation between neighbouring pairs on a date."""
    pairs = consecutive_pairs(pos)
    cells = carry_cells(pairs)
    z = pairs.join(cells, on=["symbol", "month", "k"]).with_columns(
        z=(pl.col("carry") - pl.col("mu")) / pl.col("sd")
    )
    same = ("symbol", "contract", "next_contract")
    z = z.sort("symbol", "contract", "next_contract", "date").with_columns(
        lag=pl.col("z").shift(1).over(same), lag_k=pl.col("k").shift(1).over(same)
    )
    steady = z.filter(pl.col("k") == pl.col("lag_k"))
    by_day = z.sort("symbol", "date", "k").with_columns(
        right=pl.col("z").shift(-1).over("symbol", "date"),
        right_k=pl.col("k").shift(-1).over("symbol", "date"),
    )
    out: dict[str, dict[str, object]] = {}
    for sym in CURVE_SYMBOLS:
        mine = pl.col("symbol") == sym

        def ar1(rows: pl.DataFrame) -> float:
            return float(rows.select(pl.corr("z", "lag")).item())

        phi_far = ar1(steady.filter(mine & (pl.col("k") >= 2)))
        phi_near = ar1(steady.filter(mine & (pl.col("k") == 1)))
        adj = by_day.filter(mine & (pl.col("right_k") == pl.col("k") + 1))
        knots = {
            m: [
                (r["days"], r["mu"], r["sd"], r["skew"])
                for r in part.sort("k").iter_rows(named=True)
            ]
            for (m,), part in cells.filter(mine).partition_by("month", as_dict=True).items()
        }
        out[sym] = {
            "knots": knots,
            "phi": phi_far,
            "near": min(max(1.0 - phi_near / phi_far, 0.0), 0.5),
            "rho": float(adj.select(pl.corr("z", "right")).item()),
        }
    return out


def with_level(pos: pl.DataFrame) -> pl.DataFrame:
    """Adds ``level``: the EMA of the nearest contract's volume, per symbol, as in the sample."""
    parts = []
    for part in pos.filter(pl.col("k") == 1).sort("symbol", "date").partition_by("symbol"):
        level = front_volume_level(part["volume"].fill_null(np.nan).to_numpy())
        parts.append(part.select("symbol", "date").with_columns(level=pl.Series(level)))
    return pos.join(pl.concat(parts), on=["symbol", "date"])


def profile(
    pos: pl.DataFrame, column: str
) -> tuple[dict[str, dict[str, list[float]]], pl.DataFrame]:
    """Per symbol and delivery month: the median of ``column / level`` in each bucket of
    business days to expiry (``PROFILE_EDGES``), at the buckets' mid-points
    (``profile_days()``; a bucket with fewer than ``MIN_BUCKET_ROWS`` rows is interpolated from
    its neighbours, flat at the ends), and the rows with ``resid``: the log ratio less the
    profile interpolated linearly in log."""
    edges = np.array(PROFILE_EDGES)
    days = profile_days()
    rows = pos.filter(
        pl.col(column).is_not_null() & (pl.col(column) > 0) & pl.col("level").is_not_nan()
    ).with_columns(
        log_ratio=(pl.col(column) / pl.col("level")).log(),
        bucket=pl.col("to_expiry")
        .cast(pl.Int64)
        .map_batches(
            lambda s: pl.Series(np.searchsorted(edges, s.to_numpy(), side="right") - 1),
            return_dtype=pl.Int64,
        ),
    )
    knots: dict[str, dict[str, list[float]]] = {}
    parts = []
    for (sym, month), part in rows.partition_by("symbol", "month", as_dict=True).items():
        med = (
            part.group_by("bucket")
            .agg(pl.col("log_ratio").median(), pl.len())
            .filter((pl.col("len") >= MIN_BUCKET_ROWS) & (pl.col("bucket") < edges.size - 1))
            .sort("bucket")
        )
        log_values = np.interp(days, days[med["bucket"].to_numpy()], med["log_ratio"].to_numpy())
        knots.setdefault(str(sym), {})[str(month)] = np.exp(log_values).tolist()
        fit = np.interp(part["to_expiry"].to_numpy(), days, log_values)
        parts.append(part.with_columns(resid=pl.col("log_ratio") - pl.Series(fit)))
    return knots, pl.concat(parts)


def profile_days() -> np.ndarray:
    edges = np.array(PROFILE_EDGES, dtype=np.float64)
    return (edges[:-1] + edges[1:] - 1.0) / 2.0


def noise_constants(resid: pl.DataFrame) -> dict[str, tuple[float, float]]:
    """sd and daily AR(1), within each contract over consecutive dates, of the residuals less
    their mean over the date's contracts (scaled by sqrt(n / (n - 1)) for the n contracts): the
    contract's own noise. What the contracts of a date share (the level of open interest
    against the front's volume EMA, a busy day) is left out."""
    n = pl.len().over("symbol", "date")
    own = (pl.col("resid") - pl.col("resid").mean().over("symbol", "date")) * (n / (n - 1)).sqrt()
    r = (
        resid.filter(n > 1)
        .with_columns(resid=own)
        .sort("symbol", "contract", "date")
        .with_columns(lag=pl.col("resid").shift(1).over("symbol", "contract"))
    )
    stats = r.group_by("symbol").agg(pl.col("resid").std().alias("sd"), pl.corr("resid", "lag"))
    return {row["symbol"]: (row["sd"], row["resid"]) for row in stats.iter_rows(named=True)}


def derive(real: pl.DataFrame) -> None:
    pos = with_positions(real)
    counts = pos.group_by("symbol", "date").len().group_by("symbol").agg(pl.col("len").median())
    carry = carry_constants(pos)
    roll = with_level(pos.filter(pl.col("date") >= ROLL_FROM))
    oi_knots, oi_resid = profile(roll, "open_interest")
    vol_knots, vol_resid = profile(roll.filter(pl.col("k") >= 2), "volume")
    oi_noise, vol_noise = noise_constants(oi_resid), noise_constants(vol_resid)

    def num(v: float) -> str:
        return f"{v:.4g}"

    n = {r["symbol"]: int(r["len"]) for r in counts.iter_rows(named=True)}
    print("# fmt: off")
    cells = ", ".join(f'"{s}": {n[s]}' for s in CURVE_SYMBOLS)
    print(f"CONTRACTS_PER_DATE: dict[str, int] = {{{cells}}}")
    print("CARRY_BY_MONTH: dict[str, dict[str, tuple[tuple[float, float, float, float], ...]]] = {")
    for s in CURVE_SYMBOLS:
        print(f'    "{s}": {{')
        knots = carry[s]["knots"]
        assert isinstance(knots, dict)
        for m in CONTRACT_MONTHS[s]:
            cells = ", ".join(
                f"({d:.0f}, {mu:.4f}, {sd:.4f}, {lam:.3f})" for d, mu, sd, lam in knots[m]
            )
            print(f'        "{m}": ({cells}),')
        print("    },")
    print("}")
    for name, key in (
        ("CARRY_PHI", "phi"),
        ("CARRY_NEAR_NOISE", "near"),
        ("CARRY_NEIGHBOUR_CORR", "rho"),
    ):
        cells = ", ".join(f'"{s}": {num(carry[s][key])}' for s in CURVE_SYMBOLS)  # type: ignore[arg-type]
        print(f"{name}: dict[str, float] = {{{cells}}}")
    print(f"PROFILE_DAYS: tuple[float, ...] = ({', '.join(f'{d:g}' for d in profile_days())})")
    for name, table in (("OI_PROFILE", oi_knots), ("VOLUME_PROFILE", vol_knots)):
        print(f"{name}: dict[str, dict[str, tuple[float, ...]]] = {{")
        for s in CURVE_SYMBOLS:
            print(f'    "{s}": {{')
            for m in CONTRACT_MONTHS[s]:
                print(f'        "{m}": ({", ".join(num(v) for v in table[s][m])}),')
            print("    },")
        print("}")
    for name, noise in (("OI_NOISE", oi_noise), ("VOLUME_NOISE", vol_noise)):
        cells = ", ".join(f'"{s}": ({num(noise[s][0])}, {num(noise[s][1])})' for s in CURVE_SYMBOLS)
        print(f"{name}: dict[str, tuple[float, float]] = {{{cells}}}")
    print("# fmt: on")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=0, help="repeat the summary for seeds 0..N-1")
    parser.add_argument("--derive", action="store_true", help="print the real-data constants")
    args = parser.parse_args(argv)
    path = real_path()
    if not path.exists():
        print(f"SKIP: real curve file {path} not found (set CBI_REAL_CURVE to point at it).")
        return 0
    real = load_real(path)
    if args.derive:
        derive(real)
        return 0

    started = time.perf_counter()
    generated = generate_sample_market(SampleSpec(), today=TODAY)
    elapsed = time.perf_counter() - started
    curve = generated.curve
    span = {
        name: f"{f['date'].min()!s}..{f['date'].max()!s}" for name, f in (("r", real), ("s", curve))
    }
    print(f"real file: {path} ({real.height} rows, {span['r']})")
    print(
        f"sample: default spec (seed {SampleSpec().seed}), today={TODAY}: {curve.height} curve "
        f"rows, {span['s']}; market, signals and curve generated in {elapsed:.2f} s"
    )
    print(
        "\nPer symbol, real (carry 1995-2010, roll 2000-2010) vs sample (whole span); carry = "
        "annualised log(c2/c1); OI cross = median business days before the nearest's expiry "
        "(and before its first notice day) when the 2nd nearest's open interest first exceeds it"
    )
    real_summary, sample_summary = summary(real, ROLL_FROM), summary(curve)
    print_comparison(real_summary, sample_summary)
    print_handover(real_summary, sample_summary)
    print_month_carry(
        month_carry(consecutive_pairs(with_positions(real))),
        month_carry(consecutive_pairs(with_positions(curve))),
    )
    if args.seeds:
        print(f"\nSeeds 0..{args.seeds - 1}: carry mean / sd / AR(1), contango share, OI cross")
        for seed in range(args.seeds):
            s = summary(generate_sample_market(SampleSpec(seed=seed), today=TODAY).curve)
            cells = "  ".join(
                f"{r['symbol']} {r['mean']:+.3f}/{r['sd']:.3f}/{r['ar1']:.3f} "
                f"{r['contango']:.2f} {r['cross_expiry']:.0f}"
                for r in s.iter_rows(named=True)
            )
            print(f"  seed {seed:>3}: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
