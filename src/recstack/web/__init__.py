"""The web page (Gradio): `recstack web DIR` serves `recstack.web.app.build_app` for a saved model."""
