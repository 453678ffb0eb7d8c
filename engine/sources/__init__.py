"""Alert sources: each payload format turned into ``IncomingAlert`` values."""
