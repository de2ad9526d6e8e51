from django import forms

from .states import Mode


class QueueDeployForm(forms.Form):
    application = forms.SlugField(widget=forms.HiddenInput)
    branch = forms.CharField(max_length=200)
    mode = forms.ChoiceField(choices=Mode.choices, initial=Mode.DEPLOY, widget=forms.RadioSelect)
    note = forms.CharField(max_length=500, required=False)
