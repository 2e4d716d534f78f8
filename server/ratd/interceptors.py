"""The interceptor API, for operators who write their own (docs/interceptors.md):

    from ratd.interceptors import CallContext, Interceptor, Refuse

    class NoSecretsUpstream(Interceptor):
        async def before(self, call: CallContext, request):
            if "TOP SECRET" in str(request):
                raise Refuse("this text may not leave the building", "PERMISSION_DENIED")
            return None  # unchanged

Name it in ``[interceptors] chain = ["mymodule:NoSecretsUpstream"]`` (or publish it as an
entry point of the group ``ratatoskr.interceptors``). Built in: ``PiiRedactor``.
"""

from ratd.core.interceptors import GROUP, CallContext, Interceptor, Refuse
from ratd.core.pii import PiiRedactor

__all__ = ["GROUP", "CallContext", "Interceptor", "PiiRedactor", "Refuse"]
