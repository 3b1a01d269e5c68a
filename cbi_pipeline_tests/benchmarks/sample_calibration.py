"""Compare the sample market with the real dev file (2000-01-03..2010-09) and re-derive constants.

Run from the repository root:

    .venv/bin/python cbi_pipeline_tests/benchmarks/sample_calibration.py [--seeds N] [--derive]

The real file is ``../shared/data/real/dev_market_1995_2010.csv`` relative to the repository root,
or the path in ``CBI_REAL_DATA``. When it is absent the script says so and exits 0.

Printed: per symbol the annualised daily log-return volatility and the close level
min/median/max, real vs sample, over the overlap; the crisis/calm volatility ratio; the largest
daily-return correlation difference among ZL ZS ZM ZC ZW CL HO DXY; ZL's long-horizon mean
reversion (real vs sample) and the strength of the sample's built-in lead-lag relations.
``--seeds N`` repeats the summary for seeds 0..N-1 to show it does not hinge on one seed.
``--derive`` prints the real-data constants as hard-coded in ``core/sample/calibration.py``.
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

from cbi_pipeline.core.sample.generator import SampleSpec, generate_sample_market
from cbi_pipeline.core.sample.prices import board_crush

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REAL = REPO_ROOT.parent / "shared" / "data" / "real" / "dev_market_1995_2010.csv"
OVERLAP_START = dt.date(2000, 1, 3)
TODAY = dt.date(2026, 11, 24)
SYMBOLS = ("ZL", "ZS", "ZM", "ZC", "ZW", "CL", "HO", "DXY", "VIX")
CORR_SYMBOLS = ("ZL", "ZS", "ZM", "ZC", "ZW", "CL", "HO", "DXY")


def real_path() -> Path:
    env = os.environ.get("CBI_REAL_DATA")
    return Path(env) if env else DEFAULT_REAL


def load_real(path: Path) -> pl.DataFrame:
    numeric = {c: pl.Float64 for c in ("open", "high", "low", "close", "volume")}
    return pl.read_csv(path, schema_overrides=numeric, try_parse_dates=True).with_columns(
        pl.col("date").cast(pl.Date)
    )


def with_returns(market: pl.DataFrame) -> pl.DataFrame:
    """Daily log return between consecutive rows of each symbol (gaps give multi-day returns)."""
    return market.sort("symbol", "date").with_columns(r=pl.col("close").log().diff().over("symbol"))


def window(frame: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    return frame.filter(pl.col("date").is_between(start, end))


def closes(frame: pl.DataFrame, symbol: str, start: dt.date, end: dt.date) -> np.ndarray:
    return window(frame, start, end).filter(pl.col("symbol") == symbol)["close"].to_numpy()


def ann_vol(frame: pl.DataFrame, symbol: str, start: dt.date, end: dt.date) -> float:
    r = window(frame, start, end).filter(pl.col("symbol") == symbol)["r"].drop_nulls()
    return float(np.std(r.to_numpy(), ddof=1)) * np.sqrt(252.0)


def corr_matrix(frame: pl.DataFrame, symbols: tuple[str, ...]) -> np.ndarray:
    wide = (
        frame.filter(pl.col("symbol").is_in(symbols))
        .pivot(on="symbol", index="date", values="r")
        .select(symbols)
        .drop_nulls()
    )
    return np.corrcoef(wide.to_numpy().T)


def level_table(real: pl.DataFrame, sample: pl.DataFrame, end: dt.date) -> None:
    print(f"\nPer symbol, {OVERLAP_START}..{end} (vol = annualised daily log-return sd)")
    header = (
        f"{'symbol':<7}{'vol real':>9}{'sample':>8}{'ratio':>7}  "
        f"{'min real':>9}{'sample':>9}  {'median real':>11}{'sample':>9}  "
        f"{'max real':>9}{'sample':>9}  {'2008 peak':>9}{'sample':>9}"
    )
    print(header)
    print("-" * len(header))
    for sym in SYMBOLS:
        vr, vs = ann_vol(real, sym, OVERLAP_START, end), ann_vol(sample, sym, OVERLAP_START, end)
        cr, cs = (closes(f, sym, OVERLAP_START, end) for f in (real, sample))
        pr, ps = (
            closes(f, sym, dt.date(2008, 1, 1), dt.date(2008, 12, 31)) for f in (real, sample)
        )
        print(
            f"{sym:<7}{vr:>9.3f}{vs:>8.3f}{vs / vr:>7.2f}  "
            f"{cr.min():>9.2f}{cs.min():>9.2f}  {np.median(cr):>11.2f}{np.median(cs):>9.2f}  "
            f"{cr.max():>9.2f}{cs.max():>9.2f}  {pr.max():>9.2f}{ps.max():>9.2f}"
        )


def corr_summary(real: pl.DataFrame, sample: pl.DataFrame, end: dt.date) -> tuple[float, str]:
    cr = corr_matrix(window(real, OVERLAP_START, end), CORR_SYMBOLS)
    cs = corr_matrix(window(sample, OVERLAP_START, end), CORR_SYMBOLS)
    diff = np.abs(cr - cs)
    i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return float(
        diff.max()
    ), f"{CORR_SYMBOLS[i]}-{CORR_SYMBOLS[j]} real {cr[i, j]:.2f} sample {cs[i, j]:.2f}"


def crisis_ratio(frame: pl.DataFrame, symbol: str = "ZL") -> float:
    crisis = ann_vol(frame, symbol, dt.date(2008, 1, 1), dt.date(2009, 12, 31))
    calm = ann_vol(frame, symbol, dt.date(2003, 1, 1), dt.date(2006, 12, 31))
    return crisis / calm


def ma_reversion(frame: pl.DataFrame, symbol: str, horizon: int, end: dt.date) -> float:
    """corr(next-h log return, log price minus its 252-day mean): long-horizon mean reversion."""
    z = window(frame, dt.date(1995, 1, 1), end).filter(pl.col("symbol") == symbol).sort("date")
    z = z.with_columns(lp=pl.col("close").log()).with_columns(
        dev=pl.col("lp") - pl.col("lp").rolling_mean(252),
        fwd=pl.col("lp").shift(-horizon) - pl.col("lp"),
    )
    z = z.drop_nulls(["dev", "fwd"])
    return float(np.corrcoef(z["dev"], z["fwd"])[0, 1])


def lead_lag(sample: pl.DataFrame, signals: pl.DataFrame) -> dict[str, float]:
    """Correlations that measure the sample's built-in lead-lag relations (whole sample)."""
    wide = sample.pivot(on="symbol", index="date", values="close").sort("date")
    wide = (
        wide.with_columns(pl.exclude("date").forward_fill())
        .with_columns(
            lz=pl.col("ZL").log(),
            crush=board_crush(pl.col("ZL"), pl.col("ZS"), pl.col("ZM")),
            palm=(pl.col("ZL") * 22.0462 / (pl.col("FCPO") / pl.col("USDMYR"))).log(),
        )
        .with_columns(
            crush_dev=pl.col("crush") - pl.col("crush").rolling_mean(60),
            palm_dev=pl.col("palm") - pl.col("palm").rolling_mean(120),
            fwd1=pl.col("lz").shift(-1) - pl.col("lz"),
            fwd21=pl.col("lz").shift(-21) - pl.col("lz"),
            zs_fwd1=pl.col("ZS").log().shift(-1) - pl.col("ZS").log(),
        )
    )
    precip = signals.filter(pl.col("series") == "weather_us_midwest_precip_anom").select(
        "date", precip="value"
    )
    wide = wide.join(precip, on="date", how="left")
    out = {}
    for name, x, y, cond in (
        ("crush dev -> ZL next 1d", "crush_dev", "fwd1", None),
        ("crush dev -> ZL next 21d", "crush_dev", "fwd21", None),
        ("palm-soy dev -> ZL next 1d", "palm_dev", "fwd1", None),
        ("palm-soy dev -> ZL next 21d", "palm_dev", "fwd21", None),
        ("US precip (Jun-Aug) -> ZS next 1d", "precip", "zs_fwd1", (6, 8)),
        ("US precip (Jun-Aug) -> ZL next 1d", "precip", "fwd1", (6, 8)),
    ):
        sub = wide.select("date", x, y).drop_nulls()
        sub = sub.filter(pl.all_horizontal(pl.col(x, y).is_finite()))
        if cond:
            sub = sub.filter(pl.col("date").dt.month().is_between(*cond))
        out[name] = float(np.corrcoef(sub[x], sub[y])[0, 1])
    return out


def linear_skill(sample: pl.DataFrame, signals: pl.DataFrame, split: dt.date) -> dict[int, float]:
    """MAPE of an OLS on the built-in drivers / MAPE of the random walk, out of sample.

    Features at t use data up to t: crush and palm-soy deviations, log ZL minus its 252-day mean,
    yesterday's US precipitation anomaly in June-August and the calendar month (sin/cos). Fit on
    origins before ``split``, scored on origins from ``split`` on; < 1 means the model wins.
    """
    wide = sample.pivot(on="symbol", index="date", values="close").sort("date")
    wide = wide.with_columns(pl.exclude("date").forward_fill())
    precip = signals.filter(pl.col("series") == "weather_us_midwest_precip_anom")
    wide = wide.join(precip.select("date", precip="value"), on="date", how="left")
    lz = pl.col("ZL").log()
    palm = (pl.col("ZL") * 22.0462 / (pl.col("FCPO") / pl.col("USDMYR"))).log()
    crush = board_crush(pl.col("ZL"), pl.col("ZS"), pl.col("ZM"))
    month = pl.col("date").dt.month().cast(pl.Float64) * (2 * np.pi / 12)
    feats = wide.with_columns(
        crush_dev=crush - crush.rolling_mean(60),
        palm_dev=palm - palm.rolling_mean(120),
        ma_dev=lz - lz.rolling_mean(252),
        precip_summer=pl.col("precip").fill_null(0.0)
        * pl.col("date").dt.month().is_between(6, 8).cast(pl.Float64),
        m_sin=month.sin(),
        m_cos=month.cos(),
    )
    names = ["crush_dev", "palm_dev", "ma_dev", "precip_summer", "m_sin", "m_cos"]
    out = {}
    for h in (5, 21, 63):
        data = feats.with_columns(fwd=lz.shift(-h) - lz, price=pl.col("ZL"))
        data = data.drop_nulls([*names, "fwd"])
        train, test = data.filter(pl.col("date") < split), data.filter(pl.col("date") >= split)
        x_train = np.column_stack([np.ones(train.height), train.select(names).to_numpy()])
        x_test = np.column_stack([np.ones(test.height), test.select(names).to_numpy()])
        beta = np.linalg.lstsq(x_train, train["fwd"].to_numpy(), rcond=None)[0]
        price, actual = (
            test["price"].to_numpy(),
            test["price"].to_numpy() * np.exp(test["fwd"].to_numpy()),
        )
        mape_rw = np.mean(np.abs(price / actual - 1.0))
        mape_model = np.mean(np.abs(price * np.exp(x_test @ beta) / actual - 1.0))
        out[h] = float(mape_model / mape_rw)
    return out


def derive(real: pl.DataFrame) -> None:
    """Print the real-data constants of core/sample/calibration.py (knots, vols, correlations)."""
    d = with_returns(real).filter(pl.col("date") >= OVERLAP_START)
    first = d.sort("date").group_by("symbol").agg(pl.col("close").first())
    firsts = dict(first.iter_rows())
    monthly = pl.col("date").is_between(dt.date(2007, 7, 1), dt.date(2009, 6, 30))
    period = (
        pl.when(monthly)
        .then(pl.col("date").dt.truncate("1mo"))
        .otherwise(pl.col("date").dt.truncate("1q").dt.offset_by("1mo"))
    )
    knots = (
        d.with_columns(mid=period.dt.offset_by("14d"))
        .group_by("mid", "symbol")
        .agg(pl.col("close").log().mean().exp().alias("c"))
        .pivot(on="symbol", index="mid", values="c")
        .sort("mid")
        .select(["mid", *SYMBOLS])
    )

    def fmt(v: float) -> str:
        return f"{v:.4g}" if v < 1000 else f"{v:.0f}"

    print("_REAL_KNOTS = (  # date, " + ", ".join(SYMBOLS))
    print(f'    ("{OVERLAP_START}", ' + ", ".join(fmt(firsts[s]) for s in SYMBOLS) + "),")
    for row in knots.iter_rows():
        print(f'    ("{row[0]}", ' + ", ".join(fmt(v) for v in row[1:]) + "),")
    print(")")
    yearly = (
        d.with_columns(y=pl.col("date").dt.year())
        .group_by("y", "symbol")
        .agg((pl.col("r").std() * np.sqrt(252.0)).alias("v"))
        .pivot(on="symbol", index="y", values="v")
        .sort("y")
        .select(["y", *SYMBOLS])
    )
    print("# yearly annualised vol: year, " + ", ".join(SYMBOLS))
    for row in yearly.iter_rows():
        print(f"    {row[0]}: (" + ", ".join(f"{v:.3f}" for v in row[1:]) + "),")
    for name, lo, hi in (("PRE2006", 2000, 2005), ("POST2006", 2006, 2010)):
        c = corr_matrix(d.filter(pl.col("date").dt.year().is_between(lo, hi)), SYMBOLS)
        print(f"_REAL_CORR_{name} = (")
        for i in range(len(SYMBOLS)):
            cells = ", ".join(f"{c[i, j]:.2f}" for j in range(i + 1))
            print(f"    ({cells}{',' if i == 0 else ''}),")
        print(")")
    zl = with_returns(real).filter(pl.col("symbol") == "ZL").drop_nulls("r")
    by_month = zl.group_by(pl.col("date").dt.month().alias("m")).agg(pl.col("r").mean()).sort("m")
    mu = by_month["r"].to_numpy()
    bp = ", ".join(f"{round(0.5 * 21 * v * 1e4)}" for v in mu - mu.mean())
    print(f"_ZL_MONTH_EFFECT_21D = np.array([{bp}]) / 1e4  # 1995-2010, demeaned, halved")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=0, help="also summarise seeds 0..N-1")
    parser.add_argument("--derive", action="store_true", help="print the real-data constants")
    args = parser.parse_args(argv)

    path = real_path()
    if not path.exists():
        print(f"SKIP: real data file {path} not found (set CBI_REAL_DATA to point at it).")
        return 0
    real = with_returns(load_real(path))
    end = real["date"].max()
    assert isinstance(end, dt.date)
    if args.derive:
        derive(load_real(path))
        return 0

    started = time.perf_counter()
    generated = generate_sample_market(SampleSpec(), today=TODAY)
    elapsed = time.perf_counter() - started
    sample = with_returns(generated.market)
    print(f"real file: {path}")
    print(
        f"sample: default spec (seed {SampleSpec().seed}), today={TODAY}: "
        f"{generated.market.height} market rows, {generated.signals.height} signal rows, "
        f"generated in {elapsed:.2f} s"
    )
    level_table(real, sample, end)
    worst, pair = corr_summary(real, sample, end)
    print(f"\nmax |corr real - corr sample| over {', '.join(CORR_SYMBOLS)}: {worst:.3f} ({pair})")
    print(
        f"ZL vol 2008-09 / 2003-06: real {crisis_ratio(real):.2f}, "
        f"sample {crisis_ratio(sample):.2f}"
    )
    print("\nLong-horizon mean reversion, corr(next-h return, log price - 252d mean), to 2010-09:")
    for sym in ("ZL", "ZS", "CL"):
        cells = []
        for h in (21, 63, 126):
            cells.append(
                f"h={h}: real {ma_reversion(real, sym, h, end):+.3f} "
                f"sample {ma_reversion(sample, sym, h, end):+.3f}"
            )
        print(f"  {sym}: " + "; ".join(cells))
    print("\nBuilt-in lead-lag relations in the sample (corr, whole sample 2000..):")
    for name, value in lead_lag(generated.market, generated.signals).items():
        print(f"  {name:<36}{value:+.3f}")

    split = dt.date(2015, 1, 1)
    skill = linear_skill(generated.market, generated.signals, split)
    cells = ", ".join(f"h={h}: {ratio:.3f}" for h, ratio in skill.items())
    print(f"  OLS on these drivers, fit < {split}, MAPE / random-walk MAPE after: {cells}")

    if args.seeds:
        print(f"\nSeeds 0..{args.seeds - 1}: max vol ratio error, max corr diff, ZL crisis ratio")
        for seed in range(args.seeds):
            g = generate_sample_market(SampleSpec(seed=seed), today=TODAY)
            s = with_returns(g.market)
            ratios = [
                ann_vol(s, x, OVERLAP_START, end) / ann_vol(real, x, OVERLAP_START, end)
                for x in SYMBOLS
            ]
            worst_s, pair_s = corr_summary(real, s, end)
            ll = lead_lag(g.market, g.signals)
            sk = linear_skill(g.market, g.signals, split)
            print(
                f"  seed {seed:>3}: vol ratio {min(ratios):.2f}..{max(ratios):.2f}, "
                f"corr diff {worst_s:.3f} ({pair_s}), crisis {crisis_ratio(s):.2f}, "
                f"crush->ZL21 {ll['crush dev -> ZL next 21d']:+.3f}, "
                f"OLS/RW MAPE h=21 {sk[21]:.3f} h=63 {sk[63]:.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
