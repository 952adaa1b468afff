"""The request bodies exactly as `shared/seeds/000_*.md` shows them (the API contract)."""

PREDICT_HISTORICAL = {
    "vehicle_id": "78",
    "user_id": "860",
    "booking_start_time": "2025-11-03T19:00:00Z",
    "booking_id": "BK123456",
}

PREDICT_REAL_TIME = {
    "vehicle_id": "78",
    "user_id": "860",
    "booking_start_time": "2025-11-03T19:00:00Z",
    "booking_id": "BK123456",
    "current_battery_level": 65.5,
    "current_timestamp": "2025-11-02T12:00:00Z",
    "intermediate_bookings": [{"starts_at": "2025-11-02T13:00:00Z", "ends_at": "2025-11-02T15:00:00Z"}],
}

FUTURE = [
    {"booking_id": "BK789", "user_id": 920, "starts_at": "2025-11-03T22:00:00Z", "ends_at": "2025-11-04T01:00:00Z"}
]

CREATED = {
    "booking_id": "BK123456",
    "vehicle_id": 78,
    "user_id": 860,
    "starts_at": "2025-11-03T19:00:00Z",
    "ends_at": "2025-11-03T21:00:00Z",
    "current_battery_level": 65.5,
    "current_timestamp": "2025-11-02T12:00:00Z",
}

STARTED = {
    "booking_id": "BK123456",
    "vehicle_id": 78,
    "actual_battery_at_start": 60.5,
    "actual_started_at": "2025-11-03T19:05:00Z",
    "future_bookings": FUTURE,
}

ENDED = {
    "booking_id": "BK123456",
    "vehicle_id": 78,
    "user_id": 860,
    "starts_at": "2025-11-03T19:05:00Z",
    "ends_at": "2025-11-03T20:50:00Z",
    "battery_at_start": 60.5,
    "battery_at_end": 48.0,
    "mileage_at_start": 1000.0,
    "mileage_at_end": 1025.0,
    "charging_at_end": 0,
    "future_bookings": FUTURE,
}

MODIFIED = {
    "booking_id": "BK123456",
    "vehicle_id": 78,
    "user_id": 860,
    "new_starts_at": "2025-11-03T18:00:00Z",
    "new_ends_at": "2025-11-03T21:00:00Z",
    "modification_type": "extended",
    "future_bookings": FUTURE,
}

CANCELLED = {"booking_id": "BK123456", "vehicle_id": 78, "future_bookings": FUTURE}

URL = {
    "created": "/api/v1/events/booking-created",
    "started": "/api/v1/events/booking-started",
    "ended": "/api/v1/events/booking-ended",
    "modified": "/api/v1/events/booking-modified",
    "cancelled": "/api/v1/events/booking-cancelled",
    "predict": "/api/v1/predict",
    "batch": "/api/v1/predict/batch",
}

AFFECTED_KEYS = {"booking_id", "predicted_battery", "confidence_interval", "starts_at", "prediction_method"}
