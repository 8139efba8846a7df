"""Seeds a moto server with a small compromised account for the demo.

Prints the executor's access key id and secret (dummy values minted by the
emulator) so the demo can write them to a throwaway profile.
"""
import sys

import boto3

endpoint = sys.argv[1]
admin = dict(endpoint_url=endpoint, region_name="us-east-1",
             aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="demo")
iam = boto3.client("iam", **admin)

# The responders: the break-glass user the demo runs as, and a protected role.
iam.create_user(UserName="ir-responder", Path="/ir/")
key = iam.create_access_key(UserName="ir-responder")["AccessKey"]
iam.create_login_profile(UserName="ir-responder", Password="Resp0nder!Demo")
iam.create_role(RoleName="IR-BreakGlass", AssumeRolePolicyDocument="{}")

# The estate: developers, a CI bot whose key leaked, an attacker-made admin.
for name in ["alice", "bob", "ci-bot", "backup-admin-2"]:
    iam.create_user(UserName=name)
    iam.create_access_key(UserName=name)
    iam.create_login_profile(UserName=name, Password="Pa55word!" + name)
iam.create_access_key(UserName="ci-bot")
for role in ["app-server", "deploy", "lambda-exec"]:
    iam.create_role(RoleName=role, AssumeRolePolicyDocument="{}")
iam.create_service_linked_role(AWSServiceName="autoscaling.amazonaws.com")

print(key["AccessKeyId"], key["SecretAccessKey"])
