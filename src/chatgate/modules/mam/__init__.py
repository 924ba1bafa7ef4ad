"""XEP-0313 message archive management: the module (`module.py`), the archiving
stage, the writer, queries and the room API (`service.py`).  Nothing is imported
here, so the parts may import each other's modules without the package."""
