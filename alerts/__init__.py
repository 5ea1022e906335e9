"""Alert service: cold-chain breaches per product batch, alarm lifecycle, MKT, audit.
Built in a later issue."""
