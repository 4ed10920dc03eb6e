"""What happens after every call (Q2): reschedule the callback an agent asked for, or hand the
contact to the least-loaded support agent."""
