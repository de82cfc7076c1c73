"""The search API's routers, one module per resource; ``search_api.api.create_app`` includes them."""
