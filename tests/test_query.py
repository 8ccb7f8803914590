"""Query building: date windows, keys, levels; the daily time window of moves."""

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fw_gear_dicom_send.errors import UsageError
from fw_gear_dicom_send.pacs.query import Level, Model, Query, date_windows, parse_keys
from fw_gear_dicom_send.pacs.retrieve import Target
from fw_gear_dicom_send.pacs.window import TimeWindow

D = datetime.date


def test_windows_cover_the_range_without_overlap() -> None:
    assert list(date_windows(D(2026, 1, 1), D(2026, 1, 31), 15)) == [
        "20260101-20260115",
        "20260116-20260130",
        "20260131-20260131",
    ]
    assert list(date_windows(D(2026, 1, 1), None, 15)) == ["20260101-"]
    assert list(date_windows(None, D(2026, 1, 1), 15)) == ["-20260101"]
    assert list(date_windows(None, None, 15)) == [""]


@given(
    first=st.dates(D(2000, 1, 1), D(2030, 1, 1)),
    length=st.integers(0, 800),
    days=st.integers(1, 40),
)
def test_windows_cover_every_day_once(first: D, length: int, days: int) -> None:
    last = first + datetime.timedelta(days=length)
    covered = []
    for window in date_windows(first, last, days):
        start, end = (
            datetime.datetime.strptime(d, "%Y%m%d").date() for d in window.split("-")
        )
        assert (end - start).days < days
        covered += [
            start + datetime.timedelta(days=i) for i in range((end - start).days + 1)
        ]
    assert covered == [first + datetime.timedelta(days=i) for i in range(length + 1)]


def test_identifiers_carry_keys_dates_and_modality() -> None:
    query = Query(
        Level.STUDY,
        keys=parse_keys(["PatientID=P*", "StudyDescription"]),
        date_from=D(2026, 1, 1),
        date_to=D(2026, 1, 20),
        modality="CT",
    )
    first, second = query.identifiers()
    assert first.QueryRetrieveLevel == "STUDY"
    assert first.PatientID == "P*"
    assert first.StudyDescription == ""
    assert first.ModalitiesInStudy == "CT"
    assert (first.StudyDate, second.StudyDate) == (
        "20260101-20260115",
        "20260116-20260120",
    )
    assert "StudyInstanceUID" in first
    series = next(Query(Level.SERIES, modality="MR").identifiers())
    assert series.Modality == "MR"
    assert "ModalitiesInStudy" not in series


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: parse_keys(["Nope=1"]), "'Nope' is not a DICOM keyword"),
        (lambda: parse_keys(["=1"]), "-k takes Keyword=value"),
        (lambda: Query(Level.PATIENT, model=Model.STUDY_ROOT), "no patient level"),
        (
            lambda: Query(
                Level.PATIENT, model=Model.PATIENT_ROOT, date_from=D(2026, 1, 1)
            ),
            "a date range needs",
        ),
        (
            lambda: Query(Level.STUDY, window_days=0),
            r"the date window \(days\) must be a whole number from 1 to 36600, got 0",
        ),
        (lambda: Target(Level.IMAGE, "1.2"), "a patient, a study or a series"),
        (lambda: Target(Level.STUDY, " "), "is empty"),
        (lambda: TimeWindow.parse("20:00"), "HH:MM-HH:MM"),
        (lambda: TimeWindow.parse("25:00-06:00"), "HH:MM-HH:MM"),
        (lambda: TimeWindow.parse("06:00-06:00"), "same time"),
    ],
)
def test_bad_queries_are_usage_errors(make: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make()  # type: ignore[operator]


def at(hour: int, minute: int = 0) -> datetime.datetime:
    return datetime.datetime(2026, 11, 22, hour, minute)


def test_a_window_across_midnight() -> None:
    night = TimeWindow.parse("20:00-06:00")
    assert night.wait(at(21)) == 0
    assert night.wait(at(3)) == 0
    assert night.wait(at(6)) == 14 * 3600
    assert night.wait(at(19, 30)) == 30 * 60


def test_a_window_within_a_day() -> None:
    lunch = TimeWindow.parse("12:00-13:30")
    assert lunch.wait(at(12, 45)) == 0
    assert lunch.wait(at(13, 30)) == 22.5 * 3600
    assert lunch.wait(at(11)) == 3600


def test_waiting_sleeps_until_the_window_opens() -> None:
    slept: list[float] = []
    now = datetime.datetime.now()
    opens = (now + datetime.timedelta(hours=2)).time()
    closes = (now + datetime.timedelta(hours=3)).time()
    window = TimeWindow(
        opens.replace(second=0, microsecond=0), closes.replace(second=0, microsecond=0)
    )
    window.wait_until_open(slept.append)
    assert len(slept) == 1
    assert 3600 < slept[0] <= 2 * 3600
