"""The Salesforce stand-in: REST, SOAP login, sObject Collections, Composite, describe."""
