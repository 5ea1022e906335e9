"""SMS and voice calls in China through the providers' official SDKs: Aliyun SMS
(dysmsapi) and voice (dyvmsapi), Tencent Cloud SMS and voice (VMS).

China's SMS and voice services send only templates approved in advance, with variables
filled in: each channel names its approved template and the variables it has, taken
from the notification's facts (:meth:`alerts.wording.AlarmFacts.fields`: ``place``,
``event``, ``time``, ``value``, ``batches``, ``alarm``, ``link``), in the recipient's
language. A channel returns the provider's receipt (its message or call id), which the
outbox records; a refusal by the provider or an unreachable service is a
:class:`~alerts.notify.DeliveryError`, retried with backoff.

``endpoint`` points a channel at another address (a private gateway, or the tests'
recording server over plain HTTP).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from alerts.notify import DeliveryError, Message


def _field_values(message: Message, params: tuple[str, ...]) -> list[str]:
    missing = [p for p in params if p not in message.fields]
    if missing:
        raise DeliveryError(f"the message has no {', '.join(missing)} for the template")
    return [message.fields[p] for p in params]


def _aliyun_errors() -> tuple[type[BaseException], ...]:
    from darabonba import exceptions as dara
    from Tea import exceptions as tea

    return (tea.TeaException, tea.ValidateException, tea.RetryError, dara.ValidateException,
            dara.RetryError, OSError)  # fmt: skip


@dataclass
class Aliyun:
    """What both Aliyun channels share: the AccessKey from the environment, the endpoint."""

    access_key_id_env: str
    access_key_secret_env: str
    endpoint: str | None = None

    def config(self, default_endpoint: str) -> object:
        from alibabacloud_tea_openapi.models import Config

        endpoint = self.endpoint or default_endpoint
        plain = endpoint.startswith("http://")
        return Config(
            access_key_id=os.environ.get(self.access_key_id_env, ""),
            access_key_secret=os.environ.get(self.access_key_secret_env, ""),
            endpoint=endpoint.removeprefix("http://").removeprefix("https://"),
            protocol="HTTP" if plain else "HTTPS",
        )


@dataclass
class AliyunSms:
    """Aliyun SMS: SendSms with the signature and template code, variables as JSON."""

    account: Aliyun
    sign_name: str
    template_code: str
    params: tuple[str, ...]
    name: str = "aliyun-sms"

    def send(self, message: Message, recipients: tuple[str, ...]) -> str:
        from alibabacloud_dysmsapi20170525 import models
        from alibabacloud_dysmsapi20170525.client import Client

        values = dict(zip(self.params, _field_values(message, self.params), strict=True))
        request = models.SendSmsRequest(
            phone_numbers=",".join(recipients),
            sign_name=self.sign_name,
            template_code=self.template_code,
            template_param=json.dumps(values, ensure_ascii=False),
        )
        try:
            reply = Client(self.account.config("dysmsapi.aliyuncs.com")).send_sms(request)
        except _aliyun_errors() as exc:
            raise DeliveryError(f"aliyun sms: {exc}") from None
        if reply.body is None or reply.body.code != "OK":
            code = None if reply.body is None else (reply.body.code, reply.body.message)
            raise DeliveryError(f"aliyun sms refused it: {code}")
        return f"aliyun-sms {reply.body.biz_id}"


@dataclass
class AliyunVoice:
    """Aliyun voice: a text-to-speech call (SingleCallByTts), one number per call."""

    account: Aliyun
    tts_code: str
    params: tuple[str, ...]
    show_number: str | None = None
    play_times: int = 2
    name: str = "aliyun-voice"

    def send(self, message: Message, recipients: tuple[str, ...]) -> str:
        from alibabacloud_dyvmsapi20170525 import models
        from alibabacloud_dyvmsapi20170525.client import Client

        values = dict(zip(self.params, _field_values(message, self.params), strict=True))
        client = Client(self.account.config("dyvmsapi.aliyuncs.com"))
        calls = []
        for number in recipients:
            request = models.SingleCallByTtsRequest(
                called_number=number,
                called_show_number=self.show_number,
                tts_code=self.tts_code,
                tts_param=json.dumps(values, ensure_ascii=False),
                play_times=self.play_times,
            )
            try:
                reply = client.single_call_by_tts(request)
            except _aliyun_errors() as exc:
                raise DeliveryError(f"aliyun voice: {exc}") from None
            if reply.body is None or reply.body.code != "OK":
                code = None if reply.body is None else (reply.body.code, reply.body.message)
                raise DeliveryError(f"aliyun voice refused the call to {number}: {code}")
            calls.append(str(reply.body.call_id))
        return f"aliyun-voice {' '.join(calls)}"


@dataclass
class Tencent:
    """What both Tencent Cloud channels share: the SecretId/SecretKey from the
    environment, the region, the endpoint."""

    secret_id_env: str
    secret_key_env: str
    region: str = "ap-guangzhou"
    endpoint: str | None = None

    def profile(self, default_endpoint: str) -> tuple[object, object]:
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile

        endpoint = self.endpoint or default_endpoint
        http = HttpProfile(
            endpoint=endpoint.removeprefix("http://").removeprefix("https://"),
            protocol="http" if endpoint.startswith("http://") else "https",
        )
        secret = credential.Credential(
            os.environ.get(self.secret_id_env, ""), os.environ.get(self.secret_key_env, "")
        )
        return secret, ClientProfile(httpProfile=http)


def _tencent_errors() -> tuple[type[BaseException], ...]:
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
        TencentCloudSDKException,
    )

    return (TencentCloudSDKException, OSError)


@dataclass
class TencentSms:
    """Tencent Cloud SMS: SendSms with the SDK app, signature and template id; the
    template's variables are positional ({1}, {2} …), in ``params`` order."""

    account: Tencent
    sdk_app_id: str
    sign_name: str
    template_id: str
    params: tuple[str, ...]
    name: str = "tencent-sms"

    def send(self, message: Message, recipients: tuple[str, ...]) -> str:
        from tencentcloud.sms.v20210111 import models, sms_client

        request = models.SendSmsRequest()
        request.SmsSdkAppId, request.SignName = self.sdk_app_id, self.sign_name
        request.TemplateId = self.template_id
        request.TemplateParamSet = _field_values(message, self.params)
        request.PhoneNumberSet = list(recipients)
        secret, profile = self.account.profile("sms.tencentcloudapi.com")
        try:
            reply = sms_client.SmsClient(secret, self.account.region, profile).SendSms(request)
        except _tencent_errors() as exc:
            raise DeliveryError(f"tencent sms: {exc}") from None
        statuses = list(reply.SendStatusSet or [])
        refused = [(s.PhoneNumber, s.Code, s.Message) for s in statuses if s.Code != "Ok"]
        if refused or not statuses:
            raise DeliveryError(f"tencent sms refused: {refused or 'no status'}")
        return f"tencent-sms {' '.join(str(s.SerialNo) for s in statuses)}"


@dataclass
class TencentVoice:
    """Tencent Cloud voice messaging (VMS): SendTtsVoice, one number per call."""

    account: Tencent
    voice_sdk_app_id: str
    template_id: str
    params: tuple[str, ...]
    play_times: int = 2
    name: str = "tencent-voice"

    def send(self, message: Message, recipients: tuple[str, ...]) -> str:
        from tencentcloud.vms.v20200902 import models, vms_client

        secret, profile = self.account.profile("vms.tencentcloudapi.com")
        client = vms_client.VmsClient(secret, self.account.region, profile)
        calls = []
        for number in recipients:
            request = models.SendTtsVoiceRequest()
            request.TemplateId, request.CalledNumber = self.template_id, number
            request.VoiceSdkAppid = self.voice_sdk_app_id
            request.TemplateParamSet = _field_values(message, self.params)
            request.PlayTimes = self.play_times
            try:
                reply = client.SendTtsVoice(request)
            except _tencent_errors() as exc:
                raise DeliveryError(f"tencent voice: {exc}") from None
            if reply.SendStatus is None or not reply.SendStatus.CallId:
                raise DeliveryError(f"tencent voice placed no call to {number}")
            calls.append(str(reply.SendStatus.CallId))
        return f"tencent-voice {' '.join(calls)}"
