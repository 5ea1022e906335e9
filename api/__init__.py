"""The web API and pages: FastAPI over the alert service's store and the readings store."""
