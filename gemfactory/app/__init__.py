"""``gemfactory app``: a local Gradio web app to chat with a checkpoint about an ECG record and an image.

``uploads`` turns uploaded files into a WFDB record and its arrays (no Gradio needed), ``ui`` builds
the page, ``launch`` loads the model and serves the page. Gradio is imported only by ``ui``/``launch``.
"""
