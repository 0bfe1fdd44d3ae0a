"""The compose demo's application: tasks for the runners (:mod:`compose_demo.tasks`) and a web app that enqueues
them (:mod:`compose_demo.web`). See docs/how-to/deployment.md, "Containers"."""
