terraform {
  # 1.10: the newest feature these files use is the S3 backend's own state locking
  # (`use_lockfile`, backend.tf.example); the JWT key parameter's postcondition (main.tf) needs
  # 1.2. functions/aws/tests/deploy.rs fails when this floor and the features used disagree.
  required_version = ">= 1.10.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }

  # Remote state: copy backend.tf.example to backend.tf (an S3 bucket with versioning and a
  # lock file) before `terraform init`. Without it the state is local (terraform.tfstate).
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, { "app" = "roomcast", "roomcast:stack" = var.name })
  }
}
