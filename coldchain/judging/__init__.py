"""How a sensor's readings are judged against limits: breaches, the continuous, cumulative,
fault, no-data and door rules (docs/design-alerts.md). Pure code without a database, in
the foundation so that the alert service (the record) and a truck's gateway (the cab's
own alarms while the uplink is down) judge by the very same rules."""
