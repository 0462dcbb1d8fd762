"""In-process CRM emulators (HubSpot, Salesforce) for end-to-end tests."""
