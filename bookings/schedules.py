"""The bookings app's periodic tasks (written after every migrate: common/schedules.py)."""

SCHEDULES = {
    # Bookings whose start passed NO_SHOW_GRACE_HOURS ago without a pick-up become no-shows, also on quiet cars.
    "bookings_no_shows_mark": {
        "func": "bookings.tasks.no_shows_mark",
        "schedule_type": "H",  # Schedule.HOURLY
        "repeats": -1,
        "cluster": None,
    },
}
