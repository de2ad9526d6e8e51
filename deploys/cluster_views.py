"""The cluster page: deploys.cluster_page reads it, the template draws it."""

from django.shortcuts import get_object_or_404, render

from clusters.models import Cluster

from .cluster_page import cluster_page


def cluster_detail(request, name: str):
    cluster = get_object_or_404(Cluster, name=name)
    return render(request, "deploys/cluster.html", {"page": cluster_page(cluster)})
