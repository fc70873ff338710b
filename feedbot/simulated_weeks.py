"""A realistic simulated stretch of weeks, for `feedbot demo` and the digest benchmark.

Shops and field teams of a mobile operator report what they see, in German and English, the
way the CEO interview that started feedbot describes it: technicians and shop staff tell
leadership their problems, leaders call affected customers back, customers ask on Facebook
and in the "Mobilfunkexperten" community. Problems come in waves (a router batch that
reboots, a double-billed roaming option), colleagues say *me too*, leaders acknowledge and
resolve. Everything goes through the same service functions as real reports, so the search
terms, timelines and counters are exactly what the bot would have stored.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session

from feedbot.core import digest, reports, triage
from feedbot.core.config import RuntimeConfig
from feedbot.core.identity import Identities
from feedbot.core.reports import ReportDraft
from feedbot.models import Report, ReportSource, Urgency

LOCATIONS = (
    "Shop Leipzig Hbf",
    "Shop Dresden Altmarkt",
    "Shop Berlin Alexanderplatz",
    "Shop Hamburg Mönckebergstraße",
    "Shop Köln Schildergasse",
    "Shop München Stachus",
    "Field team Sachsen",
    "Field team Brandenburg",
    "Region Nord",
    "Region West",
    "Hotline Potsdam",
)
LEADERS = ("UDEMOLEAD1", "UDEMOLEAD2", "UDEMOLEAD3")
STAFF = tuple(f"UDEMO{index:04d}" for index in range(1, 61))
DEMO_IDENTITIES = Identities("feedbot-demo-only-" + "0" * 32)
"""The demo's own database seals its made-up people with a key of its own."""


@dataclass(frozen=True)
class Problem:
    """One recurring problem: how people describe it, and how it gets solved."""

    category: str
    texts: tuple[str, ...]
    notes: tuple[str, ...]
    urgency: Urgency = Urgency.NORMAL
    peak_week: int | None = None
    """Weeks before the last one when reports about it peak (None: a steady trickle)."""
    weekly: float = 1.0


PROBLEMS: tuple[Problem, ...] = (
    Problem(
        "Devices & hardware",
        (
            "Fritzbox 7590 aus Charge 7 startet stündlich neu, Kunden bringen sie zurück.",
            "Die Fritzbox 7590 startet ständig neu, drei Kunden wollten heute tauschen.",
            "Fritzbox 7590 (Charge 7) startet neu, sobald WLAN aktiv ist.",
        ),
        ("Firmware 7.57 für Charge 7 an alle Shops verteilt; Tauschgeräte liegen bereit.",),
        Urgency.HIGH,
        peak_week=2,
        weekly=5.0,
    ),
    Problem(
        "Devices & hardware",
        (
            "Fritzbox 7590 reboots every hour, customers bring them back to the shop.",
            "Customers return the Fritzbox 7590: it reboots every hour.",
        ),
        ("Firmware update rolled out; affected customers get a replacement at once.",),
        Urgency.HIGH,
        peak_week=2,
        weekly=2.5,
    ),
    Problem(
        "Billing & tariffs",
        (
            "Kunden wird die Roaming-Option auf der Rechnung doppelt berechnet.",
            "Roaming-Option doppelt berechnet, Kundin droht mit Kündigung.",
            "Roaming-Option auf der Novemberrechnung doppelt berechnet.",
        ),
        ("Abrechnungsfehler behoben, Gutschrift läuft automatisch mit der nächsten Rechnung.",),
        Urgency.HIGH,
        peak_week=0,
        weekly=5.0,
    ),
    Problem(
        "Billing & tariffs",
        (
            "Roaming option charged twice on the November bill, customers are angry.",
            "Customers see the roaming option charged twice on their bill.",
        ),
        ("Billing rule fixed; credits go out with the next invoice.",),
        Urgency.HIGH,
        peak_week=0,
        weekly=2.0,
    ),
    Problem(
        "Network & coverage",
        (
            "LTE fällt rund um den Bahnhof seit gestern Abend immer wieder aus.",
            "LTE am Bahnhof fällt abends immer wieder aus, Gespräche brechen ab.",
            "LTE drops around the station every evening, calls break off.",
        ),
        ("Antenne am Standort getauscht, das Netzteam hat die Zelle neu eingestellt.",),
        Urgency.CRITICAL,
        peak_week=4,
        weekly=3.0,
    ),
    Problem(
        "Network & coverage",
        (
            "Kein Netz in der Tiefgarage, Kunden können nicht telefonieren.",
            "No signal in the underground car park next to the shop.",
        ),
        ("Indoor-Verstärker in der Tiefgarage installiert.",),
        weekly=1.0,
    ),
    Problem(
        "IT systems",
        (
            "Aktivierung von SIM-Karten dauert im Vertriebsportal über 20 Minuten.",
            "Vertriebsportal hängt bei der SIM-Aktivierung, Kunden warten im Shop.",
            "SIM activation in the sales portal takes more than 20 minutes per customer.",
        ),
        ("Aktivierungsserver skaliert, die Aktivierung dauert wieder unter zwei Minuten.",),
        Urgency.HIGH,
        peak_week=6,
        weekly=3.0,
    ),
    Problem(
        "IT systems",
        (
            "VPN im Außendienst bricht ständig ab, Aufträge gehen verloren.",
            "Field VPN keeps dropping, we lose work orders.",
        ),
        ("Neues VPN-Profil an alle Außendienst-Laptops verteilt.",),
        weekly=1.0,
    ),
    Problem(
        "Customer experience",
        (
            "Kunden beschweren sich auf Facebook, dass niemand auf Serviceanfragen antwortet.",
            "Customers complain on Facebook that nobody answers their service requests.",
        ),
        ("Das Social-Media-Team beantwortet jetzt jede Serviceanfrage innerhalb eines Tages.",),
        weekly=1.5,
    ),
    Problem(
        "Customer experience",
        (
            "Kunde wartet seit drei Wochen auf den versprochenen Rückruf der Führungskraft.",
            "Kundin wartet immer noch auf den Rückruf der Führungskraft.",
        ),
        ("Führungskräfte rufen betroffene Kunden jetzt innerhalb von 48 Stunden an.",),
        Urgency.HIGH,
        weekly=1.5,
    ),
    Problem(
        "Customer experience",
        ("Customers ask why the Mobilfunkexperten community answers faster than the hotline.",),
        ("Hotline and community experts now share one answer database.",),
        weekly=0.8,
    ),
    Problem(
        "Shop & tools",
        (
            "Kassensystem hängt jeden Morgen beim Tagesabschluss.",
            "Kasse friert jeden Morgen beim Tagesabschluss ein.",
        ),
        ("Update des Kassensystems eingespielt.",),
        Urgency.LOW,
        weekly=1.5,
    ),
    Problem(
        "Shop & tools",
        (
            "Drucker im Shop druckt keine Verträge mehr, Kunden müssen warten.",
            "Der Drucker druckt keine Verträge, Kunden warten am Tresen.",
        ),
        ("Neuer Drucker geliefert und eingerichtet.",),
        weekly=1.2,
    ),
    Problem(
        "Shop & tools",
        ("Appointment tool shows every booking twice.", "Every appointment shows up twice."),
        ("Tool vendor fixed the duplicate bookings in release 4.2.",),
        Urgency.LOW,
        weekly=1.0,
    ),
    Problem(
        "Devices & hardware",
        (
            "Demo-iPhones im Shop: Akkus blähen sich auf, Geräte aus der Auslage genommen.",
            "Demo phones have swollen batteries, we took them off display.",
        ),
        ("Alle Demo-Geräte der Serie ausgetauscht.",),
        Urgency.CRITICAL,
        peak_week=1,
        weekly=1.2,
    ),
    Problem(
        "Other",
        (
            "Parkplatz vor dem Shop ist seit Wochen gesperrt, Kunden finden uns nicht.",
            "Der Kundenparkplatz ist seit Wochen gesperrt.",
        ),
        ("Mit dem Vermieter geklärt, der Parkplatz ist wieder frei.",),
        Urgency.LOW,
        weekly=0.8,
    ),
    Problem(
        "Other",
        ("Fuel card of the service van is declined at every station.",),
        ("New fuel cards issued to all field teams.",),
        Urgency.LOW,
        weekly=0.6,
    ),
)


@dataclass(frozen=True)
class DemoSummary:
    reports: int
    weeks: int
    last_period: str


def _intensity(problem: Problem, weeks_ago: int) -> float:
    if problem.peak_week is None:
        return problem.weekly
    return problem.weekly * math.exp(-((weeks_ago - problem.peak_week) ** 2) / 3.0) + 0.3


def populate(
    session: Session,
    *,
    config: RuntimeConfig,
    now: datetime,
    weeks: int = 10,
    seed: int = 7,
    volume: float = 1.6,
) -> DemoSummary:
    """Fill an empty database with `weeks` weeks of reports ending with last week (in the
    configured timezone), plus a few from this week; `volume` scales how many. Deterministic
    for a given `seed` and week; the caller commits."""
    rng = random.Random(seed)
    zone = config.zone
    last = digest.shift(digest.period_of(now.astimezone(zone).date()), -1)
    created = 0
    for weeks_ago in range(weeks - 1, -2, -1):
        period = digest.shift(last, -weeks_ago)
        start, end = digest.week_bounds(period, zone)
        end = min(end, now - timedelta(hours=1))
        if end <= start:
            continue
        for problem in PROBLEMS:
            count = _poisson(rng, volume * _intensity(problem, weeks_ago))
            for _ in range(count):
                moment = _working_hours(rng, start, end, zone)
                _file(session, rng, problem, moment, now, config)
                created += 1
    return DemoSummary(reports=created, weeks=weeks, last_period=last)


def _poisson(rng: random.Random, mean: float) -> int:
    threshold, count, product = math.exp(-mean), 0, rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def _working_hours(rng: random.Random, start: datetime, end: datetime, zone: ZoneInfo) -> datetime:
    """A moment in [start, end) when shops are open (08:00-20:00 local), else any moment."""
    for _ in range(20):
        moment = start + (end - start) * rng.random()
        if 8 <= moment.astimezone(zone).hour < 20:
            return moment
    return start + (end - start) * rng.random()


def _file(
    session: Session,
    rng: random.Random,
    problem: Problem,
    moment: datetime,
    now: datetime,
    config: RuntimeConfig,
) -> Report:
    urgency = problem.urgency if rng.random() < 0.7 else Urgency.NORMAL
    report = reports.create_report(
        session,
        reporter_id=rng.choice(STAFF),
        draft=ReportDraft(
            text=rng.choice(problem.texts),
            source=rng.choice(list(ReportSource)),
            category=problem.category,
            location=rng.choice(LOCATIONS),
            urgency=urgency,
            customers_affected=rng.choice([None, 0, 1, 2, 5, 12, 40]),
            anonymous=rng.random() < 0.15,
        ),
        config=config,
        now=moment,
        identities=DEMO_IDENTITIES,
    )
    for colleague in rng.sample(STAFF, k=min(int(rng.expovariate(0.6)), 8)):
        at = moment + timedelta(hours=rng.uniform(0.5, 48))
        if at < now:
            reports.add_me_too(
                session, report=report, user_id=colleague, now=at, identities=DEMO_IDENTITIES
            )
    leader = rng.choice(LEADERS)
    acknowledged = moment + timedelta(hours=rng.lognormvariate(1.5, 1.0))
    if acknowledged < now and rng.random() < 0.9:
        triage.acknowledge(
            session,
            report=report,
            actor=leader,
            config=config,
            now=acknowledged,
            identities=DEMO_IDENTITIES,
        )
        resolved = acknowledged + timedelta(hours=rng.lognormvariate(3.5, 0.9))
        if resolved < now and rng.random() < 0.8:
            triage.resolve(
                session,
                report=report,
                actor=leader,
                note=rng.choice(problem.notes),
                config=config,
                now=resolved,
                identities=DEMO_IDENTITIES,
            )
        elif rng.random() < 0.4:
            report.follow_up_at = acknowledged + timedelta(days=rng.uniform(1, 10))
            session.add(report)
    return report
